"""CAAT: `tables` declares its tables (runs per profile, evaluation, selection rule, cells) and `figures`
its figures. `runs` holds the grid its tables and figures share. Importing the package registers them."""
from bench.papers.caat import figures, tables  # noqa: F401  (figures reuse the tables' plans)
