"""FRL's class-wise fairness constraints (Xu et al. 2021) and the methods built on them: FRL and Baseline ReWeight
(CAAT imports the constraints too)."""
