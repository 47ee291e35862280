"""Seconds per epoch of PGD-10 AT, tiny-CNN on Fashion-MNIST: the bench's loop vs a minimal hand loop.

    python -m bench.benchmarks.epoch_overhead [--epochs 2] [--batches N] [--device cpu]

Both loops do the same arithmetic on the same tensors: uniform-init L∞ PGD-10 (ε 0.1, step ε/4) in eval
mode, CE on the adversaries, SGD step. The bench side is the real `train_run` epoch (method plugin,
on-device batches, per-class meters, records); checkpoints and evaluation are outside the timed part
(`train_seconds` in the records). The hand loop runs before and after the bench's epochs; medians are compared.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from bench.config import RunConfig
from bench.data import DATASETS, load_dataset
from bench.store import RunStore
from bench.train import train_run
from bench.training.assemble import Runtime, make_model


def hand_epoch(model, x_all, y_all, batches: int, eps: float, step: float, opt, gen) -> float:
    start = time.perf_counter()
    perm = torch.randperm(len(y_all), generator=gen)
    for b in range(batches):
        idx = perm[b * 128:(b + 1) * 128]
        x, y = x_all[idx].float() / 255, y_all[idx]
        model.eval()
        u = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(10):
            u.requires_grad_(True)
            g, = torch.autograd.grad(F.cross_entropy(model(u), y), u)
            u = torch.min(torch.max(u.detach() + step * g.sign(), x - eps), x + eps).clamp(0, 1)
        model.train()
        loss = F.cross_entropy(model(u), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="epochs timed on each side")
    p.add_argument("--batches", type=int, default=None, help="batches per epoch (default: the full 60k set)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    info = DATASETS.get("fmnist")
    train, _ = load_dataset("fmnist")
    n = len(train) if args.batches is None else args.batches * 128
    batches = -(-n // 128)
    x_all, y_all = train.x[:n].to(device), train.y[:n].to(device)

    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", train_limit=n, epochs=args.epochs,
                    lr=0.01, eval_attacks=("clean",), eval_n=128)
    model = make_model(cfg, info, Runtime(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)

    def hand_epochs() -> list[float]:
        return [hand_epoch(model, x_all, y_all, batches, info.default_eps, info.default_step, opt, gen)
                for _ in range(args.epochs)]

    hand = hand_epochs()  # before and after the bench's epochs, so drift in machine speed hits both sides
    with tempfile.TemporaryDirectory() as tmp:
        run = RunStore(tmp).run_dir(cfg)
        train_run(cfg, run, Runtime(device), evaluation=None)
        ours = [r["train_seconds"] for r in run.records()]
    hand += hand_epochs()
    h, o = statistics.median(hand), statistics.median(ours)
    print(f"PGD-10 AT, tiny-CNN, Fashion-MNIST, {n} images ({batches} batches of 128), {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"hand loop : {' '.join(f'{t:.2f}' for t in hand)} s/epoch (median {h:.2f})")
    print(f"bench loop: {' '.join(f'{t:.2f}' for t in ours)} s/epoch (median {o:.2f})")
    print(f"overhead  : {100 * (o / h - 1):+.1f}%")


if __name__ == "__main__":
    main()
