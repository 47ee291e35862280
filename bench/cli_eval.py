"""`python -m bench eval`: evaluate a stored run's checkpoint (any kept one, by name or selection rule) with
chosen attacks, budget, norm and subset; the results are keyed artifacts of the run (bench.eval_store), the
same files the tables read, reused when the same evaluation is asked again."""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, Iterator

from bench.cli_grid import add_runtime_flags, comma_list


def add_eval_command(sub: argparse._SubParsersAction, store: argparse.ArgumentParser) -> None:
    from bench.eval_weights import add_weights_flags

    ep = sub.add_parser("eval", help="evaluate a stored run's checkpoint with chosen attacks", parents=[store],
                        description=__doc__)
    ep.add_argument("run", nargs="?", help="run folder or run id (a unique prefix is enough)")
    ep.add_argument("--checkpoint", default="best",
                    help="best, last, best_<series>, last_<series> (series: ema, fawa, ...) or <series>@e<epoch> "
                         "(0-based, e.g. model@e11); `best` is chosen by --rule")
    ep.add_argument("--rule", default="best",
                    help="selection rule behind best: last, best[:attack=pgd20,on=test,score=acc,after=0.5] or "
                         "cfa[:attack=pgd10,on=test,margin=0.02,last=5] (bench/selection.py)")
    ep.add_argument("--attacks", default="clean,pgd20", help="comma list (see `list attacks`)")
    ep.add_argument("--eps", type=float, default=None, help="budget in pixel units (default: the run's)")
    ep.add_argument("--norm", choices=["linf", "l2"], default=None, help="threat model (default: the run's)")
    ep.add_argument("--n", type=int, default=None, help="evaluate on the first N test images (default all)")
    ep.add_argument("--aa-n", type=int, default=None, help="AutoAttack on the first N test images (default --n)")
    add_runtime_flags(ep)
    add_weights_flags(ep)
    ep.set_defaults(func=cmd_eval)


def attack_cell(name: str, ev: dict[str, Any]) -> str:
    worst = ev["worst_class_acc"]
    worst_text = "n/a" if worst is None else f"{100 * worst:.1f}% (class {ev['worst_class']})"
    return f"{name} {100 * ev['acc']:.2f}% (worst {worst_text}, n={ev['n']})"


def format_summary(summary: dict[str, Any]) -> str:
    """The evaluated checkpoints of a run (bench.eval_store.EvaluatedRun.summary), one line each."""
    lines = [f"{summary['run_id']}: {summary['method']} on {summary['dataset']} ({summary['model']}, "
             f"{summary['epochs']} epochs, seed {summary['seed']}); best = {summary['rule']}"]
    for name, ev in summary["checkpoints"].items():
        if ev is None:
            lines.append(f"  {name:<10} not evaluated")
            continue
        label = f"{name} (epoch {ev['epoch'] + 1})"
        lines.append(f"  {label:<18} " + " | ".join(attack_cell(a, ev["attacks"][a]) for a in summary["attacks"]
                                                 if a in ev["attacks"]))
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.eval_store import Evaluation, run_evaluation
    from bench.selection import parse_rule
    from bench.store import RunStore
    from bench.training.assemble import Runtime, resolve_device

    if args.weights is not None:
        from bench.eval_weights import evaluate_weights

        out = evaluate_weights(args)
        print(f"{args.weights} [{args.arch}]  " + " | ".join(attack_cell(a, v) for a, v in out["attacks"].items()))
        return 0
    if args.run is None:
        raise ValueError("name a stored run, or give --weights FILE --arch NAME")
    run = RunStore(args.runs_dir).open(args.run)
    if run.status() != "done":
        raise ValueError(f"run {run.path.name} is {run.status()}: evaluate it once it has finished training")
    with _flag("--attacks/--eps/--norm/--n"):
        evaluation = Evaluation(comma_list(args.attacks), n=args.n, aa_n=args.aa_n, checkpoints=(args.checkpoint,),
                                eps=args.eps, norm=args.norm)
    with _flag("--rule"):
        rule = parse_rule(args.rule)
    if args.checkpoint.startswith("best"):
        check_rule(run, rule)
    summary = run_evaluation(run, evaluation, rule, Runtime(resolve_device(args.device), args.data_root))
    print(format_summary(summary))
    return 0


def add_final_evaluation_flags(p: argparse.ArgumentParser) -> None:
    """`bench train`'s evaluation after training: not part of the run's identity (`bench eval` adds more)."""
    g = p.add_argument_group("evaluation after training (not part of the run's identity; `eval` adds more later)")
    g.add_argument("--final-attacks", default="clean,pgd20,aa", help="attacks on the best and last checkpoints")
    g.add_argument("--final-n", type=int, default=None, help="on the first N test images (default all)")
    g.add_argument("--aa-n", type=int, default=None, help="AutoAttack on the first N test images (default --final-n)")
    g.add_argument("--rule", default="best", help="selection rule behind `best` (see `eval --help`)")


def final_evaluation(args: argparse.Namespace) -> tuple[Any, Any]:
    """(Evaluation, selection rule) from add_final_evaluation_flags' flags."""
    from bench.eval_store import Evaluation
    from bench.selection import parse_rule

    with _flag("--final-attacks"):
        evaluation = Evaluation(comma_list(args.final_attacks), n=args.final_n, aa_n=args.aa_n)
    with _flag("--rule"):
        return evaluation, parse_rule(args.rule)


def check_rule(run: Any, rule: Any) -> None:
    """`best` is read from the run's per-epoch records: a rule over data the run did not record (the default
    `best` = PGD-20 on test images, for a BiLAW row that monitors `val_stop`) is refused, naming the rule its
    table selects with, or else the rules its records allow."""
    from bench.selection import Best

    cfg = run.config()
    try:
        rule.check(cfg.eval_attacks, cfg.monitor_on)
    except ValueError as error:
        declared = declared_rules(run.path.name)
        hint = (" or ".join(f"--rule {spec} (as {table} selects)" for spec, table in declared.items()) if declared
                else " or ".join(f"--rule {Best(attack=a, on=on).spec()}" for a in cfg.eval_attacks if a != "clean"
                                 for on in cfg.monitor_on) or "--rule last")
        raise ValueError(f"--rule {rule.spec()}: run {run.path.name} cannot pick `best` by it ({error}); give "
                         f"{hint}") from None


def declared_rules(run_id: str) -> dict[str, str]:
    """Selection rule spec → the first table that plans this run with it (any profile)."""
    from bench.papers import EXPERIMENTS

    found: dict[str, str] = {}
    for name in EXPERIMENTS:
        experiment = EXPERIMENTS.get(name)
        for profile in experiment.profiles:
            for planned in experiment.runs(profile):
                if planned.config is not None and planned.config.run_id() == run_id:
                    found.setdefault(planned.selection.spec(), name)
    return found


@contextlib.contextmanager
def _flag(flag: str) -> Iterator[None]:
    """Name the flag in a refusal of its value."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
