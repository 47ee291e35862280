"""CFA: `tables` declares its tables (runs per profile, evaluation, selection rule, cells) and `figures`
its figures. Importing the package registers them."""
from bench.papers.cfa import figures, tables  # noqa: F401  (figures reuse the tables' plans)
