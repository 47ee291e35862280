"""Adversarial training without per-sample or per-class weights: natural training, PGD-AT, TRADES, MART, FAT, the
single-step methods (RS-FGSM, N-FGSM, GradAlign), HAT, and the `+ema` weight average."""
