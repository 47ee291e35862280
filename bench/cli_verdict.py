"""The verdict commands of `python -m bench`: `audit` the published tables, `ledger add` finished runs to the
reproduction ledger, and `report` the status page (tables/STATUS.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli_grid import PROFILE_HELP, parse_substitutions


def add_verdict_commands(sub: argparse._SubParsersAction, store: argparse.ArgumentParser) -> None:
    ap = sub.add_parser("audit", help="flag published numbers that cannot all be true or are implausible",
                        description="Run the audit's rules (bench/audit/rules.py) over tables/published/ and print "
                                    "every flagged cell with its rule and numbers. Cells flagged by a rule marked "
                                    "'not judged' are left out of `check`'s cell verdicts and marked ‡ in tables.")
    ap.add_argument("targets", nargs="*", help="papers (caat, cfa, uiat, bilaw) or table ids (table1_bilaw); "
                                               "default: every paper")
    ap.set_defaults(func=cmd_audit)

    lp = sub.add_parser("ledger", help="the reproduction ledger (tables/results/)")
    lsub = lp.add_subparsers(dest="ledger_command", required=True)
    add = lsub.add_parser("add", parents=[store],
                          help="record the finished runs a table's cells use (one JSON file per run, checkpoint "
                               "and evaluation; no checkpoints)",
                          description="TARGET is a table id (its runs are read from --runs-dir) or a run-store "
                                      "folder (every finished run there that a table cell uses, at --profile or "
                                      "at every profile).")
    add.add_argument("target", help="table id (e.g. table1_bilaw) or run-store folder")
    add.add_argument("--profile", default=None, help=PROFILE_HELP.replace("default fast",
                                                                          "default: fast for a table id, every "
                                                                          "profile for a folder"))
    add.add_argument("--substitute", action="append", default=[], metavar="DATASET=REPLACEMENT",
                     help="the dataset substitutions the runs were planned with (e.g. cifar10=cifar10-jpeg)")
    add.add_argument("--out", default=None, help="ledger folder (default tables/results/)")
    add.set_defaults(func=cmd_ledger_add)

    rp = sub.add_parser("report", parents=[store],
                        help="write tables/STATUS.md: per table and figure, profile, cells, verdict, claims, "
                             "audit flags and where the numbers came from")
    rp.add_argument("--out", default=None, help="output file (default tables/STATUS.md)")
    rp.set_defaults(func=cmd_report)


def cmd_audit(args: argparse.Namespace) -> int:
    from bench.audit import RULES, audit, parse_target
    from bench.published import PAPERS

    wanted = [parse_target(t) for t in args.targets] or [(p, None) for p in PAPERS]
    total = 0
    for paper, table in wanted:
        flags = [f for f in audit(paper) if table is None or f.table == table]
        total += len(flags)
        print(f"{paper}{'' if table is None else ' ' + table}: {len(flags)} finding(s)")
        for flag in flags:
            judged = "" if RULES.get(flag.rule).excludes else " (shown and judged)"
            print(f"  {flag.line()}{judged}")
    print("rules:")
    for name in RULES:
        print(f"  {name}{'' if RULES.get(name).excludes else ' (shown and judged)'}: {RULES.get(name).why}")
    return 0


def cmd_ledger_add(args: argparse.Namespace) -> int:
    from bench.experiments import PROFILES
    from bench.papers import EXPERIMENTS
    from bench.ledger import Ledger
    from bench.store import RunStore

    subs = parse_substitutions(args.substitute)
    ledger = Ledger() if args.out is None else Ledger(args.out)
    if args.target in EXPERIMENTS:
        store = RunStore(args.runs_dir)
        plans = [(EXPERIMENTS.get(args.target), args.profile or "fast")]
    elif Path(args.target).is_dir():
        store = RunStore(args.target)
        profiles = [args.profile] if args.profile else list(PROFILES)
        plans = [(EXPERIMENTS.get(name), p) for name in EXPERIMENTS for p in profiles]
    else:
        raise ValueError(f"ledger add {args.target!r}: not a table id (see `list experiments`) nor a run-store folder")
    written, lacking = ledger.add(store, plans, subs)
    for path in written:
        print(f"wrote {path}")
    for line in lacking:
        print(f"not recorded: {line}")
    print(f"{len(written)} ledger file(s) from {len({p.parent.name for p in written})} run(s) of {store.root}")
    return 0 if written or not lacking else 1


def cmd_report(args: argparse.Namespace) -> int:
    from bench.ledger import Ledger
    from bench.report import STATUS_FILE, write_status
    from bench.store import RunStore

    path = write_status(RunStore(args.runs_dir), Ledger(), Path(args.out) if args.out else STATUS_FILE)
    print(f"wrote {path}")
    return 0
