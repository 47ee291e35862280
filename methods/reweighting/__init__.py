"""Adversarial training with per-sample loss weights from the sample's geometry or margin: GAIRAT, MAIL, WMMR."""
