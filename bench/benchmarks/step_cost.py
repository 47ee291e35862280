"""Cost of one training step of every method, relative to PGD-AT and TRADES, on one machine in one run.

    python -m bench.benchmarks.step_cost [--methods pgd_at,trades,caat] [--repeats 10] [--device cpu]
                                         [--model tiny-cnn] [--dataset fmnist] [--hp caat:meta_every=50]

A step is what the training loop does per batch: the method's loss (adversaries, meta steps, ...),
backward and the SGD step, on the same batch of real images, after two warm-up steps; the mean over
`--repeats` steps is reported, so a method that meta-steps every k batches (CAAT's code mode: 50) is
amortised when repeats ≥ k. Per-epoch work (FRL/CAAT's class-wise validation, FAWA's gate) is not part of
a step. Methods that need a held-out split get one cut from the training set; HAT gets an untrained helper.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.data import DATASETS, Split, load_dataset
from bench.hparams import parse_pairs
from bench.models import build_model
from methods import METHODS, Batch, MethodContext, build_method

COMPOSITIONS = ("pgd_at+ema", "pgd_at+cfa", "trades+cfa", "nfgsm+uiat")
EXTRA_HP = {"trades+cfa": {"loss_scale": "cfa"}}  # CCR needs CFA's loss scale


def _context(dataset: str, model_name: str, device: torch.device, batch: int, helper_dir: Path) -> tuple:
    info = DATASETS.get(dataset)
    train, _ = load_dataset(dataset)
    held = train.subset(torch.arange(len(train) - 2000, len(train))).to(device)
    c, h, _ = info.shape

    def new_model():
        return build_model(model_name, info.num_classes, in_channels=c, image_size=h).to(device)

    torch.save({"model": new_model().state_dict()}, helper_dir / "best.pt")
    ctx = MethodContext(
        num_classes=info.num_classes, eps=info.default_eps, step_size=info.default_step, attack_steps=10,
        epochs=100, steps_per_epoch=len(train) // batch, class_counts=tuple(torch.bincount(train.y).tolist()),
        heldout={"meta": held, "val": held, "val_meta": held}, device=device, fidelity="paper",
        new_model=new_model, image_shape=tuple(info.shape), batch_size=batch)
    return ctx, train, new_model


def time_method(name: str, hp: dict[str, str], ctx: MethodContext, train: Split, new_model, repeats: int,
                batch: int) -> float:
    torch.manual_seed(0)
    model = new_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    method = build_method(name, hp, ctx)
    x = train.x[:batch].to(ctx.device).float().div_(255)
    y, idx = train.y[:batch].to(ctx.device), torch.arange(batch, device=ctx.device)
    model.train()
    times = []
    for step in range(repeats + 2):  # two warm-up steps
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = method.loss(model, Batch(x, y, idx, epoch=ctx.epochs - 1, step=step), optimizer)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.mean(times[2:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None, help="comma list (default: every method and " + ", ".join(COMPOSITIONS) + ")")
    p.add_argument("--hp", action="append", default=[], help="METHOD:key=value override, repeatable")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dataset", default="fmnist")
    p.add_argument("--model", default="tiny-cnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    names = args.methods.split(",") if args.methods else [*METHODS.names(), *COMPOSITIONS]
    overrides: dict[str, dict[str, str]] = {}
    for item in args.hp:
        method, sep, pair = item.partition(":")
        if not sep:
            p.error(f"--hp {item!r}: expected METHOD:key=value")
        overrides.setdefault(method, {}).update(parse_pairs([pair]))
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as helper_dir:
        ctx, train, new_model = _context(args.dataset, args.model, device, args.batch, Path(helper_dir))
        base = {"helper": helper_dir}
        seconds = {}
        for name in dict.fromkeys(["pgd_at", "trades", *names]):
            hp = {**EXTRA_HP.get(name, {}), **overrides.get(name, {})}
            if name.split("+")[0] == "hat":
                hp = {**base, **hp}
            seconds[name] = time_method(name, hp, ctx, train, new_model, args.repeats, args.batch)
    print(f"one training step, {args.model} on {args.dataset}, batch {args.batch}, PGD/attack steps 10, "
          f"device {device}, torch threads {torch.get_num_threads()}, mean of {args.repeats}")
    print(f"{'method':<22}{'ms/step':>10}{'× PGD-AT':>10}{'× TRADES':>10}")
    for name, s in seconds.items():
        print(f"{name:<22}{1000 * s:>10.1f}{s / seconds['pgd_at']:>10.2f}{s / seconds['trades']:>10.2f}")


if __name__ == "__main__":
    main()
