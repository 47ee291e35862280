"""`python -m bench`: list what exists, train one run, evaluate a stored run, show the run store."""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Sequence

from bench.cli_grid import add_compile_flag, add_grid_commands, add_runtime_flags
from bench.cli_verdict import add_verdict_commands
from bench.config import RunConfig
from bench.data.scenarios import ScenarioConfig
from bench.cli_eval import add_eval_command, add_final_evaluation_flags, final_evaluation, format_summary
from bench.export_cli import add_export_command
from bench.hparams import parse_pairs
from bench.registry import UnknownNameError

EPILOG = """examples:
  python -m bench list
  python -m bench train --method trades --dataset fmnist --model tiny-cnn --epochs 3
  python -m bench train --method pgd_at --dataset cifar10-jpeg --model preact-resnet18 --epochs 200 \\
      --milestones 100 150 --normalize --hp bn_mode=train
  python -m bench eval <run-id-prefix> --checkpoint best --attacks clean,pgd20,aa --aa-n 1000
  python -m bench eval <run-id-prefix> --checkpoint last_ema --attacks pgd20 --eps 0.0627 --n 1000
  python -m bench status
  python -m bench run table1_bilaw --profile fast --dry-run
  python -m bench run table1_cfa --profile fast --substitute cifar10=cifar10-jpeg
  python -m bench table table1_bilaw --profile fast
  python -m bench figures fig1_caat fig1_cfa
  python -m bench check --profile fast
  python -m bench audit bilaw
  python -m bench ledger add table1_bilaw --profile fast --runs-dir runs
  python -m bench report
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except a None that only means "decided elsewhere" (the help text says by what)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if action.default is None else super()._get_help_string(action)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (`--batch-size` for batch_size; a bool that defaults to true gets `--no-X`),
    with the field's help metadata; unset flags stay out of the namespace, so the dataclass keeps its defaults.
    The nested scenario has its own flags (SCENARIO_FLAGS)."""
    g = p.add_argument_group("what to train (every value is part of the run id)")
    for f in dataclasses.fields(RunConfig):
        if f.name == "scenario":
            continue
        hint, text = _HINTS[f.name], f.metadata["help"].replace("%", "%%")
        if f.default is True:
            text += " (on by default; this flag turns it off)"
        elif not (f.default is None or f.default == () or isinstance(f.default, bool)):
            text += f" (default: {','.join(map(str, f.default)) if isinstance(f.default, tuple) else f.default})"
        kind = dict(dest=f"run_{f.name}", default=argparse.SUPPRESS, help=text)
        if f.name == "hp":
            g.add_argument("--hp", action="append", metavar="KEY=VALUE", **kind)
        elif hint is bool:
            g.add_argument(_flag(f.name, negate=f.default), action="store_const", const=not f.default, **kind)
        elif typing.get_origin(hint) is tuple:
            g.add_argument(_flag(f.name), nargs="*", metavar=f.name.upper(), **kind)
        elif typing.get_origin(hint) is Literal:
            g.add_argument(_flag(f.name), choices=typing.get_args(hint), **kind)
        else:
            g.add_argument(_flag(f.name), metavar=f.metadata.get("metavar", f.name.upper()), **kind)
    s = p.add_argument_group("data scenario (the papers' held-out, long-tail and label-noise settings; the counts "
                             "and noise applied go to scenario.json)")
    for field, flag, text in SCENARIO_FLAGS:
        default = next(f.default for f in dataclasses.fields(ScenarioConfig) if f.name == field)
        s.add_argument(flag, dest=f"scenario_{field}", default=None, metavar=field.upper(),
                       help=text if default is None else f"{text} (default {default})")


_HINTS = typing.get_type_hints(RunConfig)


def _flag(name: str, negate: bool = False) -> str:
    return ("--no-" if negate else "--") + name.replace("_", "-")


SCENARIO_FLAGS = (  # (ScenarioConfig field, flag, help)
    ("heldout", "--heldout", "clean held-out split: caat_meta, frl_meta, cfa_val or bilaw (default none)"),
    ("heldout_per_class", "--heldout-per-class", "held-out images per class (default by kind: 300 caat/frl, 2%% of the class cfa, 1000//C per set bilaw)"),
    ("imbalance", "--imbalance", "long-tail imbalance factor n_max/n_min; 1 = balanced"),
    ("lt_profile", "--lt-profile", "long-tail profile: exp (Cui et al.) or step"),
    ("lt_order", "--lt-order", "ordered (class 0 is the head) or shuffled (CAAT's code)"),
    ("n_max", "--n-max", "images of the largest class (default: smallest class left after the held-out split)"),
    ("noise", "--noise", "label noise: uniform, flip1, flip2 or pair (i→i+1) (default none)"),
    ("noise_ratio", "--noise-ratio", "fraction of training labels corrupted"),
    ("seed", "--scenario-seed", "seed of the subsampling, held-out split and noise"),
)


def _scenario(args: argparse.Namespace) -> ScenarioConfig:
    from bench.hparams import build

    given = {field: getattr(args, f"scenario_{field}") for field, _, _ in SCENARIO_FLAGS}
    return build(ScenarioConfig, {k: v for k, v in given.items() if v is not None})


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run config of the given flags (RunConfig converts and checks each value; an error names the flag);
    a method that needs a held-out split gets its default `--heldout` kind if none is given."""
    from methods import required_heldout

    given = {f.name: getattr(args, f"run_{f.name}") for f in dataclasses.fields(RunConfig)
             if hasattr(args, f"run_{f.name}")}
    if "hp" in given:
        given["hp"] = tuple(parse_pairs(given["hp"]).items())
    for name in [n for n in given if typing.get_origin(_HINTS[n]) is tuple and n != "hp"]:
        given[name] = ",".join(given[name])  # `--milestones 100 150` and `--eval-attacks clean,pgd20` alike
    scenario = _scenario(args)
    method = given.get("method", RunConfig.method)
    if scenario.heldout is None and required_heldout(method) is not None:
        scenario = dataclasses.replace(scenario, heldout=required_heldout(method))
    try:
        return RunConfig(**given, scenario=scenario)
    except ValueError as err:
        raise ValueError(_named_by_flag(str(err))) from None


def _named_by_flag(message: str) -> str:
    """A RunConfig error that starts with a field name ('eps=-1.0 ...', 'eval_attacks: ...') with the flag the
    user typed in front: '--eps: eps=-1.0 is not allowed; ...', '--eval-attacks: unknown ...'."""
    name = re.match(r"[a-z_]+", message)
    if name is None or name.group() not in _HINTS or message[name.end():name.end() + 1] not in ("=", ":"):
        return message
    flag = _flag(name.group(), negate=getattr(RunConfig, name.group()) is True)
    return flag + message[name.end():] if message[name.end()] == ":" else f"{flag}: {message}"


def validate(cfg: RunConfig) -> None:
    """Refuse unknown names, and a norm the method does not support, before any data is loaded or any folder is made."""
    from bench.data import DATASETS
    from bench.evaluate import EVAL_ATTACKS
    from bench.models import MODELS
    from bench.schedules import SCHEDULES
    from methods import check_norm, resolved_hparams

    resolved_hparams(cfg.method, cfg.hp_dict)  # method, add-on and hyperparameter names
    check_norm(cfg.method, cfg.norm)
    DATASETS.get(cfg.dataset)
    MODELS.get(cfg.model)
    SCHEDULES.get(cfg.schedule)
    for name in cfg.eval_attacks:
        EVAL_ATTACKS.get(name)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import DATASETS
    from bench.evaluate import EVAL_ATTACKS
    from bench.models import MODELS, describe
    from bench.schedules import SCHEDULES
    from bench.papers import EXPERIMENTS, FIGURES
    from methods import ADDONS, METHODS

    def method_line(plugin: Any, prefix: str = "") -> str:
        needs = f" [uses --heldout {plugin.heldout_kind}]" if plugin.heldout_kind else ""
        return prefix + plugin.description + needs

    sections = {
        "methods": [(n, method_line(METHODS.get(n))) for n in METHODS]
        + [(f"+{n}", method_line(ADDONS.get(n), "add-on: ")) for n in ADDONS],
        "datasets": [(n, _dataset_line(DATASETS.get(n))) for n in DATASETS],
        "models": [(n, describe(n)) for n in MODELS],
        "attacks": [(n, "") for n in EVAL_ATTACKS],
        "schedules": [(n, "") for n in SCHEDULES],
        "experiments": [(n, EXPERIMENTS.get(n).title) for n in EXPERIMENTS]
        + [(n, FIGURES.get(n).title) for n in FIGURES],
    }
    wanted = [args.what] if args.what else list(sections)
    for name in wanted:
        print(f"{name}:")
        for item, text in sections[name] or [("(none defined yet)", "")]:
            print(f"  {item:<20} {text}".rstrip())
    return 0


def _dataset_line(info: Any) -> str:
    c, h, w = info.shape
    return f"{info.num_classes} classes, {c}×{h}×{w}, default ε={info.default_eps:.4g}"


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run under its lease (bench/lease.py), as `bench run` does: a second `train` of the same run,
    here or on another host, is refused with the holder's name instead of training it twice."""
    from bench.executors.local import LOCAL_LEASE_HOURS
    from bench.lease import RunLease
    from bench.run_state import run_state
    from bench.store import RunStore
    from bench.train import train_run
    from bench.training.assemble import Runtime, resolve_device

    cfg = config_from_args(args)
    validate(cfg)
    evaluation, rule = final_evaluation(args)
    rule.check(cfg.eval_attacks, cfg.monitor_on)
    runtime = Runtime(resolve_device(args.device), args.data_root, compile=args.compile)
    store = RunStore(args.runs_dir)
    check_store_root(store.root)
    check_train_limit(cfg, args.data_root)
    run = store.run_dir(cfg)
    lease = RunLease(run.path)
    made = not run.path.exists()
    if not lease.acquire("local", LOCAL_LEASE_HOURS):
        holder = lease.read()
        print(f"error: {run.path} is being trained by {holder.describe() if holder else 'another process'} "
              f"(lease {lease.path}); not training it twice", file=sys.stderr)
        return 1
    try:
        state = run_state(run).status
        print(f"run {run.path} ({'already done' if state == 'done' else 'new' if state == 'new' else f'resuming ({state})'})")
        summary = train_run(cfg, run, runtime, evaluation, rule)
    finally:
        lease.release()
        if made and not any(run.path.iterdir()):  # refused before anything was written: leave no empty folder
            run.path.rmdir()
    print(format_summary(summary))
    return 0


def check_store_root(root: Path) -> None:
    """A run store path that is (or lies under) a file, refused before anything is written there."""
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            raise ValueError(f"--runs-dir {root}: {path} is a file; allowed: a folder (made if missing)")


def check_train_limit(cfg: RunConfig, data_root: str | None) -> None:
    """--train-limit against the size of the training set the scenario leaves, which is known only once the data
    is loaded: refused here, before the run's folder exists, rather than failing inside training."""
    if cfg.train_limit is None:
        return
    from bench.data import DATASETS, load_dataset
    from bench.data.scenarios import build_scenario

    train, _ = load_dataset(cfg.dataset, data_root)
    size = len(build_scenario(train, DATASETS.get(cfg.dataset).num_classes, cfg.scenario).train.y)
    if cfg.train_limit > size:
        raise ValueError(f"--train-limit: train_limit={cfg.train_limit} is not allowed; allowed: 1..{size}, the "
                         f"images of the {cfg.dataset} training set of this scenario")


def cmd_status(args: argparse.Namespace) -> int:
    """Every stored run with its state (bench/run_state.py): cluster jobs also show their SLURM state and log,
    failed and damaged runs the reason."""
    from bench.run_state import run_states
    from bench.store import RunStore

    store = RunStore(args.runs_dir)
    if args.json:
        from bench.status_json import status_document

        print(status_document(store))
        return 0
    runs = list(store.runs())
    if not runs:
        print(f"no runs under {store.root}")
        return 0
    states = run_states(runs)
    print(f"{'status':<9} {'epochs':>9}  run")
    counts: Counter[str] = Counter()
    for run in runs:
        state = states[run.path.name]
        counts[state.status] += 1
        done, total = ("-" if n is None else n for n in (state.epochs_done, state.epochs))
        line = f"{state.status:<9} {done:>4}/{total:<4}  {run.path.name}"
        if state.job:
            known = (state.slurm_state or "not in sacct yet") if state.job["executor"] == "slurm" else "in-process"
            line += f"  [job {state.job['job_id']} {known}; log {state.job['log']}]"
        if state.reason:
            line += f"  ({state.reason}" + (f"; see {run.error_file})" if state.status == "failed" and
                                            run.error_file.exists() else ")")
        print(line)
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    runs_help = "run store folder (default: $BENCH_RUNS or ./runs)"
    p.add_argument("--runs-dir", default=None, help=runs_help)
    store = argparse.ArgumentParser(add_help=False)  # lets --runs-dir also follow the command
    store.add_argument("--runs-dir", default=argparse.SUPPRESS, help=runs_help)
    sub = p.add_subparsers(dest="command", required=True)

    lp = sub.add_parser("list", help="methods, datasets, models, attacks, schedules, experiments")
    lp.add_argument("what", nargs="?", choices=["methods", "datasets", "models", "attacks", "schedules", "experiments"])
    lp.set_defaults(func=cmd_list)

    tp = sub.add_parser("train", help="train one run (resumes it if it crashed, skips it if done)",
                        parents=[store], formatter_class=_HelpFormatter)
    _add_run_flags(tp)
    add_final_evaluation_flags(tp)
    add_runtime_flags(tp)
    add_compile_flag(tp)
    tp.set_defaults(func=cmd_train)

    add_eval_command(sub, store)

    sp = sub.add_parser("status", help="every stored run: done, running, queued, submitted, damaged, failed, crashed or new (and cluster jobs: SLURM state, log)", parents=[store])
    sp.add_argument("--json", action="store_true", help="one JSON document: counts and every run's state, epochs, job")
    sp.set_defaults(func=cmd_status)

    add_grid_commands(sub, store)
    add_verdict_commands(sub, store)
    add_export_command(sub, store)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownNameError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
