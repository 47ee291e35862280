"""`python -m bench eval --weights FILE --arch NAME`: the bench's attacks on a RobustBench-format checkpoint
(a file from RobustBench's model zoo, or one written by `python -m bench export RUN --format robustbench`),
loaded strict=True into RobustBench 1.1.1's own module of that architecture."""
from __future__ import annotations

import argparse
from typing import Any

import torch


def add_weights_flags(p: argparse.ArgumentParser) -> None:
    from bench.robustbench_interop import RB_ARCHS

    g = p.add_argument_group("a RobustBench-format checkpoint instead of a stored run")
    g.add_argument("--weights", default=None, metavar="FILE", help="state_dict file in RobustBench's keys")
    g.add_argument("--arch", default=None, help=f"RobustBench architecture: {', '.join(RB_ARCHS)}")
    g.add_argument("--dataset", default="cifar10", help="test set (3×32×32; default cifar10)")
    g.add_argument("--seed", type=int, default=0, help="seed of the attacks' random starts")


def evaluate_weights(args: argparse.Namespace) -> dict[str, Any]:
    from bench.cli_grid import comma_list
    from bench.config import RunConfig
    from bench.data import DATASETS, load_dataset
    from bench.robustbench_interop import load_robustbench
    from bench.evaluate import EvalConfig, attack_specs, evaluate
    from bench.training.assemble import Runtime, attack_budget, resolve_device

    if args.arch is None:
        raise ValueError("--weights needs --arch, the RobustBench architecture the file holds")
    info = DATASETS.get(args.dataset)
    norm = args.norm or "linf"
    eps, step = attack_budget(RunConfig(dataset=args.dataset, norm=norm, eps=args.eps), info)
    rt = Runtime(resolve_device(args.device), args.data_root)
    model = load_robustbench(args.weights, args.arch, info.num_classes).to(rt.device)
    _, test = load_dataset(args.dataset, args.data_root)
    test = test if args.n is None or args.n >= len(test) else test.subset(torch.arange(args.n))
    specs = attack_specs(comma_list(args.attacks), eps=eps, step=step, dataset=info.name, norm=norm)
    return evaluate(model, test.to(rt.device), info.num_classes, EvalConfig(specs, aa_n=args.aa_n, seed=args.seed),
                    rt.device)
