"""CFA (Wei et al. 2023): its parts CCM, CCR, FAWA as add-ons, their shared class-wise calibration, and `+cfa`,
the named expansion of the parts."""
