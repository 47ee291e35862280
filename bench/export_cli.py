"""`python -m bench export`: the run store as a tidy table (csv, parquet), or one run's checkpoint as a
RobustBench-format file."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from bench import atomic
from bench.data import DATASETS
from bench.registry import Registry
from bench.store import RunDir, RunStore


Writer = Callable[[argparse.Namespace, RunStore], Path]
FORMATS: Registry[Writer] = Registry("export format")


def _table(kind: str) -> Writer:
    def write(args: argparse.Namespace, store: RunStore) -> Path:
        from bench.export_table import store_table

        table = store_table(store, tuple(args.run))
        out = Path(args.out or f"{store.root.name}.{kind}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == "csv":
            table.to_csv(out, index=False)
        else:
            table.to_parquet(out, index=False)
        print(f"{out}: {len(table)} rows ({table['run_id'].nunique()} runs, one row per run, checkpoint, "
              "attack and class)")
        return out
    return write


def export_robustbench(run: RunDir, checkpoint: str, out: Path, rule: str = "best") -> str:
    """Write `checkpoint` of `run` (a kept checkpoint's name, `best` chosen by `rule`) as {'state_dict':
    RobustBench keys, 'architecture', 'bench': provenance}; returns the RobustBench architecture name."""
    from bench.checkpoints import CheckpointStore
    from bench.eval_store import Evaluation, EvaluatedRun
    from bench.robustbench_interop import check_exportable, to_robustbench
    from bench.selection import parse_rule

    cfg = run.config()
    info = DATASETS.get(cfg.dataset)
    arch = check_exportable(cfg.model, info.shape, cfg.normalize)
    if run.status() != "done":
        raise ValueError(f"run {run.path.name} is {run.status()}: export it once it has finished training")
    ckpt = EvaluatedRun(run, Evaluation(), parse_rule(rule)).resolve(checkpoint)
    if ckpt is None:
        raise ValueError(f"checkpoint {checkpoint} of {run.path.name} under rule {rule} needs evaluations of its "
                         f"candidates first: `python -m bench eval {run.path.name} --checkpoint {checkpoint} "
                         f"--rule {rule} --attacks aa`")
    state = CheckpointStore(run.checkpoints_dir).load(ckpt)
    atomic.torch_save(out, {
        "state_dict": to_robustbench(arch, state), "architecture": arch.name,
        "bench": {"run_id": run.path.name, "checkpoint": checkpoint, "epoch": ckpt.epoch, "model": cfg.model,
                  "dataset": cfg.dataset, "num_classes": info.num_classes, "norm": cfg.norm},
    })
    return arch.name


def _robustbench(args: argparse.Namespace, store: RunStore) -> Path:
    if len(args.run) != 1:
        raise ValueError(f"--format robustbench exports one run; got {len(args.run)} run names")
    run = store.open(args.run[0])
    out = Path(args.out or f"{run.path.name}-{args.checkpoint}.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = export_robustbench(run, args.checkpoint, out, args.rule)
    print(f"{out}: {args.checkpoint} checkpoint of {run.path.name} as RobustBench {arch}; "
          f"evaluate it with: python -m bench eval --weights {out} --arch {arch} --dataset {run.config().dataset}")
    return out


FORMATS.register("csv")(_table("csv"))
FORMATS.register("parquet")(_table("parquet"))  # needs pyarrow
FORMATS.register("robustbench")(_robustbench)


def cmd_export(args: argparse.Namespace) -> int:
    FORMATS.get(args.format)(args, RunStore(args.runs_dir))
    return 0


def add_export_command(sub: argparse._SubParsersAction, store: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export", parents=[store],
        help="every run and evaluation as one tidy table (csv, parquet), or a run's weights for RobustBench",
        description="csv/parquet: one row per (run, checkpoint, attack, class) of every per-epoch, final and "
                    "`bench eval` evaluation in the store (or of the runs named). robustbench: the run's "
                    "checkpoint renamed to the keys of RobustBench 1.1.1's own WideResNet/PreActResNet "
                    "module, loadable with strict=True.")
    p.add_argument("run", nargs="*", help="run ids or unique prefixes (default: every run; robustbench: exactly one)")
    p.add_argument("--format", required=True, help="csv, parquet or robustbench")
    p.add_argument("--out", default=None, help="output file (default: <runs folder>.<format>, or "
                                               "<run id>-<checkpoint>.pt for robustbench)")
    p.add_argument("--checkpoint", default="best",
                   help="robustbench: which kept checkpoint (best, last, best_ema, model@e11, ...)")
    p.add_argument("--rule", default="best", help="robustbench: the selection rule behind best (see `eval --help`)")
    p.set_defaults(func=cmd_export)
