"""Closed-form theory of the papers' toy models (no training): e.g. CAAT's optimal robust linear classifier."""
