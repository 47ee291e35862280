"""BiLAW: bilevel learned per-sample weights (the method, its bilevel machinery, and its weight records)."""
