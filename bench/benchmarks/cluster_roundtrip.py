"""Round trips through a real SLURM cluster (e.g. slurm/local_cluster.sh): one tiny run, then a smoke grid
submitted as a job array by `bench run`, waited for and rendered into its table.

    python -m bench.benchmarks.cluster_roundtrip [--cluster local] [--experiment table1_bilaw]
                                                 [--methods natural,pgd_at,gairat,wmmr,mail_at] [--datasets fmnist]

Prints seconds from submission to a finished run (the one-run job), and for the grid: `bench run` returning,
every run done, and the table written. The default grid is table1_bilaw's smoke profile on F-MNIST for five
methods: 5 methods × 2 models × 2 threat models = 20 runs. Run it on an otherwise idle cluster.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.cli import main
from bench.config import RunConfig
from bench.executors import SubmititExecutor
from bench.executors.cluster import load_cluster
from bench.eval_store import Evaluation
from bench.experiments.base import PlannedRun
from bench.selection import Last
from bench.store import RunStore

ONE_RUN = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", epochs=1, train_limit=128, attack_steps=1,
                    eval_attacks=("clean",), eval_n=32)
ONE_EVALUATION = Evaluation(("clean",), n=64)


def wait_finished(store: RunStore, expected: int, timeout_s: float) -> dict[str, int]:
    """Wait until `expected` runs of the store are done or failed; returns the count per status."""
    deadline = time.time() + timeout_s
    while True:
        states = [run.status() for run in store.runs()]
        finished = sum(state in ("done", "failed", "crashed") for state in states)
        if len(states) >= expected and finished >= expected:
            return {state: states.count(state) for state in set(states)}
        if time.time() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s: {finished} of {expected} runs finished")
        time.sleep(0.5)


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cluster", default="local", help="cluster profile (slurm/clusters/<name>.toml or a path)")
    parser.add_argument("--experiment", default="table1_bilaw")
    parser.add_argument("--methods", default="natural,pgd_at,gairat,wmmr,mail_at")
    parser.add_argument("--datasets", default="fmnist")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the grid")
    args = parser.parse_args(argv)
    if shutil.which("sbatch") is None:
        print("sbatch not found: `slurm/local_cluster.sh install && slurm/local_cluster.sh start` first",
              file=sys.stderr)
        return 2
    cluster = load_cluster(args.cluster)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        one = RunStore(Path(tmp) / "one")
        began = time.perf_counter()
        SubmititExecutor("slurm", cluster).run([PlannedRun("one", ONE_RUN, evaluation=ONE_EVALUATION, selection=Last())], one)
        submitted = time.perf_counter() - began
        wait_finished(one, 1, args.timeout)
        print(f"one-run job: submitted in {submitted:.1f} s, done {time.perf_counter() - began:.1f} s after submission")

        grid = RunStore(Path(tmp) / "grid")
        common = [args.experiment, "--profile", "smoke", "--runs-dir", str(grid.root)]
        began = time.perf_counter()
        main(["run", *common, "--methods", args.methods, "--datasets", args.datasets,
              "--executor", "slurm", "--cluster", args.cluster])
        returned = time.perf_counter() - began
        expected = sum(1 for _ in grid.runs())
        states = wait_finished(grid, expected, args.timeout)
        finished = time.perf_counter() - began
        main(["table", *common, "--out", tmp])
        rendered = time.perf_counter() - began
        print(f"{args.experiment} smoke grid of {expected} runs ({states}): `bench run` returned after {returned:.1f} s, "
              f"all finished after {finished:.1f} s, table rendered after {rendered:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
