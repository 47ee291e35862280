"""Inverse adversaries (Dong et al. 2023, UIAT): IAT, UIAT, UIAT one-off, the `+uiat` add-on and their shared pieces."""
