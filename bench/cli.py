"""`python -m bench`: list what exists, train one run, evaluate a stored run, show the run store."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from typing import Any, Sequence

from bench.cli_grid import add_grid_commands, add_runtime_flags, comma_list
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
    d = RunConfig()
    g = p.add_argument_group("what to train")
    g.add_argument("--method", default=d.method,
                   help="training method, with add-ons after '+' (pgd_at+ema; see `list methods`); default %(default)s")
    g.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="method hyperparameter override, repeatable (--hp beta=6; add-ons' prefixed: --hp ema.decay=0.88)")
    g.add_argument("--dataset", default=d.dataset, help="dataset (see `list datasets`); default %(default)s")
    g.add_argument("--model", default=d.model, help="architecture (see `list models`); default %(default)s")
    g.add_argument("--normalize", action="store_true", help="put the dataset's mean/std layer in the model")
    g.add_argument("--no-augment", action="store_true", help="train without the dataset's crop/flip augmentation")
    g.add_argument("--fidelity", choices=["paper", "code"], default=d.fidelity,
                   help="follow the paper text, or reproduce the official code's documented quirks where they differ "
                        "(CAAT's code: meta step every 50 batches, ε ×1.25, frozen BN; see the method's docstring)")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seed of the weights, batch order, augmentation and attacks' random starts (part of the run id)")
    g.add_argument("--init-from", default=None, metavar="RUN_ID",
                   help="start from the final weights of this finished run of the same run store (a hot start to "
                        "fine-tune; not its optimiser state); default: a fresh initialisation")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help="training minibatch size")
    o.add_argument("--train-limit", type=int, default=None, help="train on the first N training images only (smoke runs)")
    o.add_argument("--lr", type=float, default=d.lr, help="initial (piecewise) or peak (onecycle, cyclic) lr")
    o.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    o.add_argument("--nesterov", action="store_true", help="Nesterov momentum (UIAT's and HAT's recipe)")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay, help="applied to all parameters")
    o.add_argument("--schedule", default=d.schedule, help="piecewise, onecycle, cyclic, cosine or constant")
    o.add_argument("--milestones", type=int, nargs="*", default=None,
                   help="piecewise: epochs (≥ 1) where lr is multiplied by --gamma (default: 50%% and 75%% of "
                        "training, never epoch 0: a 1-epoch run trains at --lr)")
    o.add_argument("--gamma", type=float, default=d.gamma, help="piecewise: lr factor at each milestone")
    a = p.add_argument_group("training attack")
    a.add_argument("--norm", choices=["linf", "l2"], default=d.norm,
                   help="threat model of the training and evaluation attacks (l2: needs --eps)")
    a.add_argument("--eps", type=float, default=None,
                   help="budget in pixel units (default: the dataset's L∞ one; required with --norm l2)")
    a.add_argument("--step-size", type=float, default=None, help="attack step (default: the dataset's; l2: eps/4)")
    a.add_argument("--attack-steps", type=int, default=d.attack_steps,
                   help="iterations of the training attack (PGD-K); evaluation attacks have their own (pgd20: 20)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval-every", type=int, default=d.eval_every, help="epochs between per-epoch evaluations")
    e.add_argument("--eval-attacks", default=",".join(d.eval_attacks), help="per-epoch evaluations (comma list)")
    e.add_argument("--eval-step-size", type=float, default=None,
                   help="step of the evaluation attacks (default: the training attack's)")
    e.add_argument("--eval-n", type=int, default=d.eval_n, help="per-epoch evaluation on the first N test images (0: all)")
    e.add_argument("--monitor-on", default=",".join(d.monitor_on),
                   help="sets evaluated per epoch, which selection rules read (comma list): test, or a held-out "
                        "split of --heldout (bilaw: val_stop, val_meta; cfa_val: val)")
    s = p.add_argument_group("data scenario (the papers' held-out, long-tail and label-noise settings; the counts "
                             "and noise applied go to scenario.json)")
    for field, flag, text in SCENARIO_FLAGS:
        default = next(f.default for f in dataclasses.fields(ScenarioConfig) if f.name == field)
        s.add_argument(flag, dest=f"scenario_{field}", default=None, metavar=field.upper(),
                       help=text if default is None else f"{text} (default {default})")


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
    """The run config; a method that needs a held-out split gets its default `--heldout` kind if none is given."""
    from methods import canonical_name, required_heldout

    _check_attacks("--eval-attacks", comma_list(args.eval_attacks))
    scenario = _scenario(args)
    if scenario.heldout is None and required_heldout(args.method) is not None:
        scenario = dataclasses.replace(scenario, heldout=required_heldout(args.method))
    return RunConfig(
        method=canonical_name(args.method), hp=tuple(sorted(parse_pairs(args.hp).items())), dataset=args.dataset,
        model=args.model, normalize=args.normalize, augment=not args.no_augment, epochs=args.epochs,
        train_limit=args.train_limit,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
        weight_decay=args.weight_decay, schedule=args.schedule, milestones=tuple(args.milestones or ()),
        gamma=args.gamma, norm=args.norm, eps=args.eps, step_size=args.step_size, eval_step_size=args.eval_step_size,
        attack_steps=args.attack_steps,
        seed=args.seed,
        eval_every=args.eval_every, eval_attacks=comma_list(args.eval_attacks), eval_n=args.eval_n or None,
        fidelity=args.fidelity, scenario=scenario, init_from=args.init_from, monitor_on=comma_list(args.monitor_on),
    )


def _check_attacks(flag: str, names: tuple[str, ...]) -> None:
    """Unknown attack names, refused under the flag that gave them."""
    from bench.evaluate import EVAL_ATTACKS

    for name in names:
        try:
            EVAL_ATTACKS.get(name)
        except UnknownNameError as err:
            raise ValueError(f"{flag}: {err}") from None


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
    from bench.experiments import EXPERIMENTS, FIGURES
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
    from bench.store import RunStore
    from bench.train import train_run
    from bench.training.assemble import Runtime, resolve_device

    cfg = config_from_args(args)
    validate(cfg)
    evaluation, rule = final_evaluation(args)
    rule.check(cfg.eval_attacks, cfg.monitor_on)
    runtime = Runtime(resolve_device(args.device), args.data_root)
    run = RunStore(args.runs_dir).run_dir(cfg)
    state = run.status()
    if state == "running":
        print(f"{run.path} is being trained by another process (fresh heartbeat); not starting it twice.")
        return 1
    print(f"run {run.path} ({'already done' if state == 'done' else 'new' if state == 'new' else f'resuming ({state})'})")
    print(format_summary(train_run(cfg, run, runtime, evaluation, rule)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Every stored run with its state; runs submitted to a cluster also show their job, SLURM state and log."""
    from bench.executors.submitit_executor import last_job
    from bench.lease import slurm_states
    from bench.store import RunStore

    store = RunStore(args.runs_dir)
    if args.json:
        from bench.status_json import status_document

        print(status_document(store))
        return 0
    rows = [(run, run.status(), last_job(run.path)) for run in store.runs()]
    if not rows:
        print(f"no runs under {store.root}")
        return 0
    slurm = slurm_states([job["job_id"] for _, _, job in rows if job and job["executor"] == "slurm"])
    print(f"{'status':<8} {'epochs':>9}  run")
    counts: Counter[str] = Counter()
    for run, state, job in rows:
        state = _with_job_state(state, job, slurm.get(job["job_id"]) if job else None)
        counts[state] += 1
        epochs = f"{run.epochs_done():>4}/{run.config().epochs:<4}" if run.config_file.exists() else f"{'-':>4}/{'-':<4}"
        line = f"{state:<8} {epochs}  {run.path.name}"
        if job:
            known = slurm.get(job["job_id"], "not in sacct yet") if job["executor"] == "slurm" else "in-process"
            line += f"  [job {job['job_id']} {known}; log {job['log']}]"
        if state == "failed" and run.error_file.exists():
            line += f"  ({run.error_file.read_text().strip().splitlines()[-1]}; see {run.error_file})"
        print(line)
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return 0


def _with_job_state(state: str, job: dict[str, Any] | None, slurm_state: str | None) -> str:
    """The store's word for a run, refined by its cluster job: 'submitted' while SLURM's accounting does not
    list the job yet, 'queued' while it waits, 'failed' when SLURM ended it without the run finishing."""
    from bench.lease import SLURM_ENDED, SLURM_LIVE

    if state in ("done", "running", "failed") or job is None or job["executor"] != "slurm":
        return state
    if slurm_state is None:
        return "submitted"
    if slurm_state in SLURM_LIVE:
        return "running" if slurm_state == "RUNNING" else "queued"
    return "failed" if slurm_state in SLURM_ENDED else state


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
    tp.set_defaults(func=cmd_train)

    add_eval_command(sub, store)

    sp = sub.add_parser("status", help="every stored run: done, running, failed, crashed or new (and cluster jobs: SLURM state, log)", parents=[store])
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
