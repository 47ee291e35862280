"""Cost of one training step of every method, relative to TRADES and to its operation-count bound, on one
machine in one run.

    python -m bench.benchmarks.step_cost [--methods pgd_at,trades,caat] [--repeats 10] [--device cpu]
                                         [--model tiny-cnn] [--dataset fmnist] [--hp caat:meta_every=50]
                                         [--compile] [--profile]

A step is what the training loop does per batch: the method's loss (adversaries, meta steps, ...),
backward and the SGD step, on the same batch of real images, after two warm-up steps; the median over
`--repeats` steps is reported (where a method meta-steps every k > 1 batches, CAAT's code mode: 50, the mean over
whole periods of at least k steps, so that the meta step is amortised). Per-epoch work (FRL/CAAT's class-wise validation, FAWA's
gate) is not part of a step. Methods that need a held-out split get one cut from the training set; HAT gets an
untrained helper.

"bound ms" is the method's declared step bound (`Method.step_bound`, methods/core/step_bound.py) timed at this
machine's cost per pass: each kind of pass (forward, input gradient, parameter backward, backward through a
backward) timed alone on the batch right after every step (`PassTimer`), so that on a shared machine a step and
its bound see the same load; "meas/bound" is the median of those step-by-step ratios. Near 1 means the step does
no work beyond the passes its algorithm needs.
`--compile` compiles every model first (bench/compile_option.py; methods with a second-order backward are refused
and listed) and adds the first two steps' excess time (compilation) as a column. `--profile` prints torch.profiler's top operators of each method's steps.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.compile_option import check_compilable, compile_for_training
from bench.data import DATASETS, Split, load_dataset
from bench.hparams import parse_pairs
from bench.models import build_model
from methods import METHODS, Batch, MethodContext, build_method
from methods.core.lookahead import forward_with
from methods.core.step_bound import Passes

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


@dataclass
class StepTime:
    seconds: float  # per step (median, or mean over whole periods where meta steps are amortised)
    bound_seconds: float  # the declared bound at the passes' times measured beside the steps (same statistic)
    ratio: float  # measured / bound, step by step against the passes timed right after it (median)
    warmup_excess: float  # the two warm-up steps' time beyond two steps (compilation under --compile)
    bound: Passes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _seconds(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


class PassTimer:
    """Seconds of one pass of each kind (methods.core.step_bound) on the batch, on a model of the run's architecture in
    train mode: a forward; a forward + input gradient; a forward + parameter backward; and MW-Net's hypergradient
    (per-sample weights e, a create_graph backward of Σ eᵢℓᵢ, a forward at θ − g, the gradient w.r.t. e), which
    is `hypergradient(1, 1)` = 2 forwards + 2 parameter backwards + the second-order pass. Each kind is its timing
    less the passes it contains. Timed once after every step, so that a step and its bound see the same load."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, second_order: bool = True):
        self.model, self.x, self.y = model.train(), x, y
        self.named = dict(model.named_parameters())
        self.second_order = second_order  # False for a compiled model: no double backward (bench/compile_option.py)

    def _input_grad(self) -> None:
        u = self.x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(self.model(u), self.y), u)

    def _backward(self) -> None:
        F.cross_entropy(self.model(self.x), self.y).backward()

    def _hypergradient(self) -> None:
        e = torch.zeros(len(self.y), device=self.y.device, requires_grad=True)
        loss = (e * F.cross_entropy(self.model(self.x), self.y, reduction="none")).sum()
        grads = torch.autograd.grad(loss, list(self.named.values()), create_graph=True)
        stepped = {n: p - 0.1 * g for (n, p), g in zip(self.named.items(), grads)}
        torch.autograd.grad(F.cross_entropy(forward_with(self.model, stepped, self.x), self.y), e)

    def once(self) -> dict[str, float]:
        device = self.x.device
        fwd = _seconds(lambda: self.model(self.x), device)
        bwd = _seconds(self._backward, device) - fwd
        second = _seconds(self._hypergradient, device) - 2 * fwd - 2 * bwd if self.second_order else float("nan")
        return {"fwd": fwd, "input_bwd": _seconds(self._input_grad, device) - fwd, "bwd": bwd, "second": second}


def time_method(name: str, hp: dict[str, str], ctx: MethodContext, train: Split, new_model, repeats: int,
                batch: int, compile_model: bool = False, profile: bool = False) -> StepTime:
    torch.manual_seed(0)
    model, reference = new_model(), new_model()
    method = build_method(name, hp, ctx)
    if compile_model:
        check_compilable(name, method)
        compile_for_training(model)
        compile_for_training(reference)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    bound = method.step_bound(ctx.epochs - 1)
    x = train.x[:batch].to(ctx.device).float().div_(255)
    y, idx = train.y[:batch].to(ctx.device), torch.arange(batch, device=ctx.device)
    passes = PassTimer(reference, x, y, second_order=not compile_model)
    model.train()
    times, bounds = [], []
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
    every = getattr(method, "meta_every", 1)  # CAAT's code mode meta-steps every k batches: time a whole period
    repeats = max(repeats, every)
    for step in range(repeats + 2):  # two warm-up steps
        if profiler is not None and step == 2:
            profiler.start()

        def train_step():
            out = method.loss(model, Batch(x, y, idx, epoch=ctx.epochs - 1, step=step), optimizer)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

        times.append(_seconds(train_step, ctx.device))
        if profiler is None:
            bounds.append(bound.cost(passes.once()))
    if profiler is not None:  # the passes are timed after the profile, which must see the steps alone
        profiler.stop()
        print(f"--- {name}: top operators over {repeats} steps (self CPU time)")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
        bounds = [bound.cost(passes.once()) for _ in times]
    steady, steady_bounds = times[2:], bounds[2:]
    if every > 1:
        whole = every * (len(steady) // every)
        seconds, bound_seconds = statistics.mean(steady[:whole]), statistics.mean(steady_bounds[:whole])
        ratio = seconds / bound_seconds
    else:
        seconds, bound_seconds = statistics.median(steady), statistics.median(steady_bounds)
        ratio = statistics.median(t / b for t, b in zip(steady, steady_bounds))
    return StepTime(seconds, bound_seconds, ratio, max(0.0, sum(times[:2]) - 2 * seconds), bound)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=None, help="comma list (default: every method and " + ", ".join(COMPOSITIONS) + ")")
    p.add_argument("--hp", action="append", default=[], help="METHOD:key=value override, repeatable")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--dataset", default="fmnist")
    p.add_argument("--model", default="tiny-cnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (bench/compile_option.py)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per method")
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
        steps = {}
        for label in dict.fromkeys(["trades", *names]):
            name, _, fidelity = label.partition("@")  # caat@code: the method at another fidelity
            hp = {**EXTRA_HP.get(name, {}), **overrides.get(label, {})}
            if name.split("+")[0] == "hat":
                hp = {**base, **hp}
            run_ctx = replace(ctx, fidelity=fidelity or ctx.fidelity)
            try:
                steps[label] = time_method(name, hp, run_ctx, train, new_model, args.repeats, args.batch,
                                           args.compile, args.profile)
            except ValueError as refused:  # --compile of a method with a second-order backward
                print(refused)
    print(f"one training step, {args.model} on {args.dataset}, batch {args.batch}, PGD/attack steps 10, "
          f"device {device}, torch threads {torch.get_num_threads()}, median of {args.repeats}"
          f"{', compiled' if args.compile else ''}")
    compile_col = f"{'compile s':>11}" if args.compile else ""
    print(f"{'method':<22}{'ms/step':>10}{'× TRADES':>10}{'bound ms':>10}{'meas/bound':>12}{compile_col}")
    for label, st in steps.items():
        extra = f"{st.warmup_excess:>11.1f}" if args.compile else ""
        print(f"{label:<22}{1000 * st.seconds:>10.1f}{st.seconds / steps['trades'].seconds:>10.2f}"
              f"{1000 * st.bound_seconds:>10.1f}{st.ratio:>12.2f}{extra}")


if __name__ == "__main__":
    main()
