"""Executors: what trains the missing runs of a plan, chosen with `bench run --executor`.

- `local`: this process, one run after another, with a progress bar.
- `slurm`: submitit's SLURM executor; the runs go out as job arrays and `bench run` returns at once.
- `debug`: submitit's debug executor, the same submission path as `slurm` run in this process (tests).

All start from `bench.experiments.grid.missing` and take a lease on each run before training or submitting
it, so that two `bench run` calls never train one run twice at once.
"""
from bench.executors.local import LocalExecutor
from bench.executors.submitit_executor import SubmititExecutor

EXECUTORS = ("local", "slurm", "debug")

__all__ = ["EXECUTORS", "LocalExecutor", "SubmititExecutor"]
