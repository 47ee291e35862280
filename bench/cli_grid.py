"""The experiment commands of `python -m bench`: run a table's or figure's grid, render tables, draw
figures and check reproduction. Each starts from the same plan (profile, substitutions, method/seed filters)."""
from __future__ import annotations

import argparse
from pathlib import Path

PROFILE_HELP = ("paper (the papers' settings), fast (short schedules, AA on a subset), smoke (tests), or a table's "
                "own: quick (table1_bilaw: plain, AT and BiLAW on F-MNIST in a few minutes on 2 CPU cores); default fast")


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime (not part of the run's identity)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    g.add_argument("--data-root", default=None, help="folder with torchvision datasets (default $BENCH_DATA_ROOT)")


def add_compile_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action="store_true",
                   help="run the model's forward under torch.compile (bench/compile_option.py; refused for methods "
                        "with a second-order backward: BiLAW, CAAT, GradAlign). Not part of the run id: it changes "
                        "rounding, not the arithmetic; each attempt's environment.jsonl records it")


def _add_plan_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="fast", help=PROFILE_HELP)
    p.add_argument("--substitute", action="append", default=[], metavar="DATASET=REPLACEMENT",
                   help="train on REPLACEMENT wherever the plan says DATASET, e.g. cifar10=cifar10-jpeg where "
                        "CIFAR-10 is absent; repeatable; recorded in every rendered table")


def parse_substitutions(pairs: list[str]) -> dict[str, str]:
    from bench.data import DATASETS

    rules = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--substitute {pair!r}: write DATASET=REPLACEMENT, e.g. cifar10=cifar10-jpeg")
        for name in (source, target):
            DATASETS.get(name)  # refuses unknown names with the valid ones
        rules[source] = target
    return rules


def add_grid_commands(sub: argparse._SubParsersAction, store: argparse.ArgumentParser) -> None:
    rp = sub.add_parser("run", parents=[store],
                        help="train what a table or figure needs (skipping what is done), then render/draw it",
                        description="Plan the grid of a table (table<N>_<paper>) or figure (fig<N>_<paper>), "
                                    "show what is done and what is missing, train what is missing (resuming "
                                    "crashed runs), then write the table or figure. Runs whose dataset is absent "
                                    "here are reported and skipped; the others go on.")
    rp.add_argument("experiment", help="table or figure id (see `list experiments`), e.g. table1_bilaw")
    _add_plan_flags(rp)
    rp.add_argument("--methods", default="", help="only runs of these methods (comma list; 'trades' also selects trades+cfa)")
    rp.add_argument("--seeds", default="", help="only runs of these seeds (comma list)")
    rp.add_argument("--datasets", default="", help="only runs on these datasets (comma list, after substitution)")
    rp.add_argument("--models", default="", help="only runs of these architectures (comma list, e.g. small-cnn)")
    rp.add_argument("--norms", default="", help="only runs of these threat models (comma list: linf, l2)")
    rp.add_argument("--executor", default="local", choices=("local", "slurm", "debug"),
                    help="local: train here, one run after another; slurm: submit job arrays through submitit "
                         "and return at once (`status`, `table`, `check` collect later); debug: submitit's "
                         "in-process executor (tests)")
    rp.add_argument("--cluster", default=None,
                    help="cluster profile for --executor slurm: a name in slurm/clusters/ or a .toml path")
    rp.add_argument("--dry-run", action="store_true", help="list the runs, their state and the estimated cost; train nothing")
    add_runtime_flags(rp)
    add_compile_flag(rp)
    rp.set_defaults(func=cmd_run)

    tp = sub.add_parser("table", parents=[store], help="render tables from stored runs only (tables/<profile>/<id>.md, .tex, .csv)")
    tp.add_argument("experiments", nargs="*", help="table ids (default: every table)")
    _add_plan_flags(tp)
    tp.add_argument("--out", default="tables", help="output folder; tables go to OUT/<profile>/ (default tables/)")
    tp.set_defaults(func=cmd_table)

    fp = sub.add_parser("figures", parents=[store], help="draw figures from stored runs (figures/<profile>/<id>.png and .pdf)")
    fp.add_argument("figures", nargs="*", help="figure ids (default: every figure)")
    _add_plan_flags(fp)
    fp.add_argument("--out", default="figures", help="output folder; figures go to OUT/<profile>/ (default figures/)")
    fp.set_defaults(func=cmd_figures)

    cp = sub.add_parser("check", parents=[store],
                        help="do our numbers reproduce the paper's? cell by cell and claim by claim",
                        description="For each table: cells within tolerance of the published value (1.5 points "
                                    "at the paper profile; indicative only at fast/smoke), the paper's claims "
                                    "held / refuted / not testable, and a verdict. Exit status: 0, or at the "
                                    "paper profile 1 when a table is not reproduced and 3 when one is incomplete.")
    cp.add_argument("experiments", nargs="*", help="table ids (default: every table)")
    _add_plan_flags(cp)
    cp.set_defaults(func=cmd_check)


def comma_list(text: str) -> tuple[str, ...]:
    """'a, b,,c' → ('a', 'b', 'c'): the comma lists of the command line."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def cmd_run(args: argparse.Namespace) -> int:
    from bench.cost import CPU_CORES, gpu_throughput, plan_cost
    from bench.experiments import Experiment
    from bench.papers import lookup
    from bench.experiments.grid import absent_datasets, check_filters, missing, select, states, summary
    from bench.store import RunStore
    from methods import canonical_name

    artifact = lookup(args.experiment)
    subs = parse_substitutions(args.substitute)
    methods = tuple(canonical_name(m) for m in comma_list(args.methods))
    if not all(s.isdigit() for s in comma_list(args.seeds)):
        raise ValueError(f"--seeds {args.seeds!r}: give seeds as non-negative integers, e.g. --seeds 0,1,2")
    seeds = tuple(int(s) for s in comma_list(args.seeds))
    grid = artifact.runs(args.profile, subs)
    filters = dict(methods=methods, seeds=seeds, datasets=comma_list(args.datasets), models=comma_list(args.models),
                   norms=comma_list(args.norms))
    check_filters(grid, f"{artifact.id} [{args.profile}]", **filters)
    planned = select(grid, **filters)
    executor = _executor(args)  # a bad --device, --executor/--cluster pair or cluster profile stops a dry run too
    if args.compile:  # refused before anything is trained, not run by run
        check_grid_compilable(planned)
    store = RunStore(args.runs_dir)
    absent = absent_datasets(planned, args.data_root)
    run_states = states(planned, store, absent)
    todo = missing(planned, store)
    print(f"{artifact.id} [{args.profile}]: {len(run_states)} runs; {summary(run_states)}")
    if args.dry_run:
        for run in planned:
            where = run.why if run.config is None else store.run_dir(run.config).path
            state = run_states[run.key if run.config is None else store.run_dir(run.config).path.name]
            print(f"  {state:<13} {run.key:<48} {where}")
        for dataset, message in absent.items():
            print(f"data absent: {message}")
        runnable = [[run for run in runs if run.config is not None] for runs in (todo, planned)]
        todo_cost, all_cost = (plan_cost([run.config for run in runs], [run.evaluation for run in runs],
                                         [store.run_dir(run.config).status() == "done" and done_ok for run in runs])
                               for runs, done_ok in zip(runnable, (True, False)))
        print(f"estimated cost (bench/cost.py, ±2×): to run {todo_cost.gpu_hours:.2g} H100-hours "
              f"(≈{todo_cost.cpu_hours:.2g} h on {CPU_CORES} CPU cores); all {len(planned)} selected runs "
              f"{all_cost.gpu_hours:.2g} H100-hours (≈{all_cost.cpu_hours:.2g} h on {CPU_CORES} CPU cores); GPU "
              f"throughput: {gpu_throughput().source}")
        return 0
    failed = executor.run(todo, store)
    if args.executor == "slurm":
        print(f"submitted {len(todo)} runs; `python -m bench status` shows their SLURM state, "
              f"`python -m bench table {artifact.id} --profile {args.profile}` collects what has finished")
        return 1 if failed else 0
    if isinstance(artifact, Experiment):
        args.experiments, args.out = [artifact.id], "tables"
        status = cmd_table(args)
    else:
        args.figures, args.out = [artifact.id], "figures"
        status = cmd_figures(args)
    return status or (1 if failed else 0)


def check_grid_compilable(planned) -> None:
    """Refuse `--compile` for a grid with a second-order method, naming it (bench/compile_option.py)."""
    from bench.compile_option import check_compilable
    from bench.cost import probe

    for run in planned:
        if run.config is None:
            continue
        try:
            method = probe(run.config)
        except (ValueError, OSError, RuntimeError):  # HAT's helper is another run's checkpoint: checked as it trains
            continue
        check_compilable(run.config.method, method)


def _executor(args: argparse.Namespace):
    from bench.executors import LocalExecutor, SubmititExecutor
    from bench.executors.cluster import ClusterProfile, load_cluster
    from bench.training.assemble import Runtime, resolve_device

    if args.executor == "local" and args.cluster:
        raise ValueError(f"--cluster {args.cluster} applies to --executor slurm (or debug); the local executor "
                         "trains here")
    if args.executor == "local":
        return LocalExecutor(Runtime(resolve_device(args.device), args.data_root, compile=args.compile))
    if args.executor == "slurm" and not args.cluster:
        raise ValueError("--executor slurm needs --cluster NAME (a profile in slurm/clusters/, e.g. local or a copy "
                         "of example.toml)")
    cluster = load_cluster(args.cluster) if args.cluster else ClusterProfile(name="debug")
    return SubmititExecutor(args.executor, cluster, args.device, args.data_root, compile=args.compile)


def cmd_table(args: argparse.Namespace) -> int:
    from bench.papers import EXPERIMENTS
    from bench.experiments.check import check_table
    from bench.experiments.render import collect, write_table
    from bench.store import RunStore

    subs = parse_substitutions(args.substitute)
    for name in args.experiments or list(EXPERIMENTS):
        experiment = EXPERIMENTS.get(name)
        store = RunStore(args.runs_dir)
        verdict = check_table(experiment, collect(experiment, store, args.profile, subs), args.profile)
        path = write_table(experiment, store, args.profile, Path(args.out), subs, verdict.tolerance,
                           appendix=verdict.markdown())
        print(f"wrote {path} (and .tex, .csv): {verdict.measured} of {verdict.cells} cells measured")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from bench.papers import FIGURES
    from bench.experiments.figures import draw

    subs = parse_substitutions(args.substitute)
    for name in args.figures or list(FIGURES):
        paths, missing_keys = draw(FIGURES.get(name), args.runs_dir, args.profile, Path(args.out), subs)
        note = f"; missing runs: {len(missing_keys)} (`python -m bench run {name} --profile {args.profile}`)" \
            if missing_keys else ""
        print(f"wrote {', '.join(map(str, paths))}{note}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench.papers import EXPERIMENTS
    from bench.experiments.check import check_table
    from bench.experiments.render import collect
    from bench.store import RunStore

    subs = parse_substitutions(args.substitute)
    verdicts = []
    for name in args.experiments or list(EXPERIMENTS):
        experiment = EXPERIMENTS.get(name)
        result = check_table(experiment, collect(experiment, RunStore(args.runs_dir), args.profile, subs), args.profile)
        print("\n".join(result.lines()))
        verdicts.append(result.verdict)
    print(f"overall [{args.profile}]: " + ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts)))
    if args.profile != "paper":
        return 0
    return 1 if "not reproduced" in verdicts else 3 if "incomplete" in verdicts else 0

