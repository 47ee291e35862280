"""GPU throughput of the bench in one call: PGD-10 AT of PreAct ResNet-18 on cifar10-jpeg through three loops,
each precision and with/without torch.compile; one TRADES, CAAT and BiLAW step; AutoAttack throughput; peak memory.

    python -m bench.benchmarks.gpu [--out gpu_benchmark.json] [--steps 30]      # on a GPU, < 8 min on an H100
    python -m bench.benchmarks.gpu --tiny --device cpu --out /tmp/gpu.json      # its test: tiny-CNN, seconds

Loops, each timed over `--steps` batches of 128 after warm-up, scaled to one epoch (⌈50 000/128⌉ = 391 steps):
* `bench`: the bench's per-batch step as bench/train.py runs it: `BatchStream` batches (uint8 split on the
  device, augmentation on the device), the `pgd_at` plugin's loss under the precision, zero_grad, backward,
  SGD step; channels_last on CUDA.
* `hand`: a minimal loop with the data already on the device as float: PGD-10 (uniform start, eval-mode
  attack) written inline, CE, SGD.
* `official`: as the papers' official codes train (e.g. TRADES', CAAT's, BiLAW's train scripts): a DataLoader
  over CPU float tensors with per-image crop/flip in the workers, pinned memory, `.to(device)` per batch,
  fp32, `model.eval()` for the attack and `model.train()` for the update. Run at fp32 and at PyTorch's
  default (TF32 convolutions), uncompiled, as those codes do.
Precisions as `--precision` trains (bench/precision.py): fp32 (TF32 off), tf32 (TF32 convolutions and matmuls), bf16
(autocast over the default switches). Compile
(bench/compile_option.py) for `bench` and `hand` at bf16 and tf32, last, while `--budget-s` (420) allows; compile
time is reported separately and rows left out are listed as skipped.

The JSON (`--out`) holds every row, the device, torch version and `cost_model_flops_per_s`: the effective
FLOP/s of the `bench` loop at tf32 uncompiled, counted as bench.cost counts a PGD-AT step (3 × forward FLOPs
× (attack steps + 1) per image), so that bench/cost.py can take it as its GPU throughput: it reads
$BENCH_GPU_BENCHMARK or bench/benchmarks/gpu_benchmark.json (the default `--out`).

cifar10-jpeg is read where bench.data finds it; where it is missing (a bare GPU machine) random uint8 images
of its shape stand in and the JSON says `"data": "synthetic"` (step times do not depend on pixel values;
AutoAttack's does, through its early stop on misclassified points, so its row says which it ran on). AutoAttack
(standard, L∞ 8/255) runs on 1000 test images against the model the `hand` loop trained for `--steps` steps: an
almost untrained model, so most points fall at APGD-CE and the throughput is an upper bound for a robust model.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench.attacks.autoattack import autoattack
from bench.benchmarks.step_cost import time_method
from bench.compile_option import compile_for_training
from bench.cost import forward_flops
from bench.data import DATASETS, Split, load_dataset
from bench.data.batches import AugmentSpec, BatchStream
from bench.models import build_model
from bench.precision import PRECISIONS as RUN_PRECISIONS
from methods import Batch, MethodContext, build_method

DEFAULT_OUT = Path(__file__).with_name("gpu_benchmark.json")
TRAIN_IMAGES = 50_000
PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class Size:
    model: str
    dataset: str
    batch: int
    steps: int
    warmup: int
    aa_images: int
    method_repeats: int
    compile: bool  # the compiled rows (tiny skips them: compiling takes ~30 s on a CPU; tests/test_compile_option.py)
    images: int | None  # train images to load (None: the data set; tiny: that many synthetic ones)


FULL = Size("preact-resnet18", "cifar10-jpeg", 128, 30, 5, 1000, 5, True, None)
TINY = Size("tiny-cnn", "cifar10-jpeg", 16, 2, 1, 8, 1, False, 256)


@dataclass
class Row:
    loop: str
    precision: str
    compiled: bool
    ms_per_step: float
    epoch_seconds: float
    compile_seconds: float | None
    peak_memory_gib: float | None


def set_precision(precision: str, device: torch.device) -> torch.autocast:
    """A run's precision as training applies it (bench.precision.PRECISIONS): its TF32 switches, set for the rest
    of this benchmark process, and its autocast context (on for bf16, explicitly off otherwise)."""
    chosen = RUN_PRECISIONS[precision]
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = chosen.conv_tf32, chosen.matmul_tf32
    return chosen.autocast_on(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None  # the process's CPU peak (ru_maxrss) includes everything before; not a per-row number


def _timed(step: Callable[[int], None], size: Size, device: torch.device) -> tuple[float, float]:
    """(median seconds per step after warm-up, warm-up seconds beyond that many steps: compilation)."""
    times = []
    for i in range(size.warmup + size.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times[size.warmup:])
    return median, max(0.0, sum(times[:size.warmup]) - size.warmup * median)


def _model(size: Size, device: torch.device, compiled: bool, channels_last: bool = True):
    info = DATASETS.get(size.dataset)
    c, h, _ = info.shape
    torch.manual_seed(0)
    model = build_model(size.model, info.num_classes, in_channels=c, image_size=h).to(device)
    if device.type == "cuda" and channels_last:  # as bench/train.py does on CUDA
        model = model.to(memory_format=torch.channels_last)
    return compile_for_training(model) if compiled else model


def _ctx(size: Size, device: torch.device, heldout: Split) -> MethodContext:
    info = DATASETS.get(size.dataset)
    c, h, _ = info.shape
    return MethodContext(num_classes=info.num_classes, eps=8 / 255, step_size=2 / 255, attack_steps=10, epochs=100,
                         steps_per_epoch=math.ceil(TRAIN_IMAGES / size.batch),
                         class_counts=(TRAIN_IMAGES // info.num_classes,) * info.num_classes,
                         heldout={"meta": heldout, "val": heldout, "val_meta": heldout}, device=device,
                         fidelity="paper", new_model=lambda: _model(size, device, False), image_shape=tuple(info.shape),
                         batch_size=size.batch)


def bench_loop(size, device, precision, compiled, train: Split, ctx) -> Row:
    model = _model(size, device, compiled)
    method = build_method("pgd_at", {}, ctx)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    stream = BatchStream(train, size.batch, device, AugmentSpec.for_dataset(DATASETS.get(size.dataset)))
    batches = stream.epoch(torch.Generator().manual_seed(0))
    autocast = set_precision(precision, device)
    model.train()

    def step(i):
        x, y, idx = next(batches)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            out = method.loss(model, Batch(x, y, idx, 0, i), optimizer)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    return _row("bench", precision, compiled, step, size, device)


def hand_loop(size, device, precision, compiled, train: Split, ctx, keep: list | None = None) -> Row:
    model = _model(size, device, compiled)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = train.x.to(device).float().div_(255), train.y.to(device)
    eps, alpha = ctx.eps, ctx.step_size
    autocast = set_precision(precision, device)

    def step(i):
        idx = torch.randint(0, len(y_all), (size.batch,), device=device)
        x, y = x_all[idx], y_all[idx]
        model.eval()
        u = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp_(0, 1)
        for _ in range(ctx.attack_steps):
            u.requires_grad_(True)
            with autocast:
                loss = F.cross_entropy(model(u).float(), y)
            g, = torch.autograd.grad(loss, u)
            u = torch.min(torch.max(u.detach() + alpha * g.sign(), x - eps), x + eps).clamp_(0, 1)
        model.train()
        with autocast:
            loss = F.cross_entropy(model(u).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    row = _row("hand", precision, compiled, step, size, device)
    if keep is not None:
        keep.append(model)
    return row


class _Augmented(Dataset):
    """CPU float images with the official codes' per-image RandomCrop(32, padding=4) and horizontal flip."""

    def __init__(self, split: Split):
        self.x, self.y = split.x.float().div(255), split.y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = F.pad(self.x[i], (4, 4, 4, 4))
        r, c = torch.randint(0, 9, (2,)).tolist()
        img = img[:, r:r + self.x.shape[2], c:c + self.x.shape[3]]
        return (img.flip(2) if torch.rand(()) < 0.5 else img), self.y[i]


def official_loop(size, device, precision, compiled, train: Split, ctx) -> Row:
    model = _model(size, device, False, channels_last=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(_Augmented(train), batch_size=size.batch, shuffle=True, num_workers=2,
                        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=True)
    batches = iter(loader)
    set_precision(precision, device)
    eps, alpha = ctx.eps, ctx.step_size

    def step(i):
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        model.eval()
        u = x.detach() + 0.001 * torch.randn_like(x)
        for _ in range(ctx.attack_steps):
            u.requires_grad_()
            with torch.enable_grad():
                loss = F.cross_entropy(model(u), y)
            g = torch.autograd.grad(loss, [u])[0]
            u = torch.min(torch.max(u.detach() + alpha * torch.sign(g.detach()), x - eps), x + eps)
            u = torch.clamp(u, 0.0, 1.0)
        model.train()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(u), y)
        loss.backward()
        optimizer.step()

    return _row("official", precision, False, step, size, device)


def _row(loop, precision, compiled, step, size, device) -> Row:
    _peak_reset(device)
    seconds, warm = _timed(step, size, device)
    return Row(loop, precision, compiled, 1000 * seconds, seconds * math.ceil(TRAIN_IMAGES / size.batch),
               warm if compiled else None, _peak(device))


def method_steps(size, device, train: Split, ctx) -> dict[str, float]:
    """ms per step of TRADES, CAAT (paper) and BiLAW at the runs' default precision, uncompiled."""
    set_precision("default", device)
    new_model = lambda: _model(size, device, False)  # noqa: E731
    out = {}
    for name in ("trades", "caat", "bilaw"):
        out[name] = 1000 * time_method(name, {}, replace(ctx, new_model=new_model), train, new_model,
                                       size.method_repeats, size.batch).seconds
    return out


def autoattack_rate(model, test: Split, size, device, data: str) -> dict:
    set_precision("tf32", device)
    x, y = test.x[:size.aa_images].to(device).float().div_(255), test.y[:size.aa_images].to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    x_adv = autoattack(model, x, y, eps=8 / 255, version="standard", batch_size=500)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    return {"images": len(y), "seconds": seconds, "images_per_s": len(y) / seconds, "clean_acc": clean,
            "robust_acc": robust, "data": data, "model": "the hand loop's (almost untrained)"}


def data_splits(size: Size) -> tuple[Split, Split, str]:
    """(train, test, "real" | "synthetic"): the data set, or random images of its shape where it is missing."""
    if size.images is None:
        try:
            train, test = load_dataset(size.dataset)
            return train, test, "real"
        except FileNotFoundError as missing:
            print(f"{missing}\n-> synthetic images of the same shape")
    info = DATASETS.get(size.dataset)
    g = torch.Generator().manual_seed(0)

    def fake(n):
        return Split(torch.randint(0, 256, (n, *info.shape), dtype=torch.uint8, generator=g),
                     torch.randint(0, info.num_classes, (n,), generator=g))
    return fake(size.images or TRAIN_IMAGES), fake(max(size.aa_images, 64) if size.images else 10_000), "synthetic"


def run(size: Size, device: torch.device, out: Path, budget_s: float = 420.0) -> dict:
    """Every row, the method steps and AutoAttack; the compiled rows last, each only while less than `budget_s`
    has passed (compiling PRN-18 takes a minute or more per row), the rest listed as skipped."""
    began = time.perf_counter()
    train, test, data = data_splits(size)
    heldout = train.subset(torch.arange(len(train) - 4 * size.batch, len(train))).to(device)
    ctx = _ctx(size, device, heldout)
    rows, trained, skipped = [], [], []

    def measure(loop, precision, compiled, **extra):
        rows.append(loop(size, device, precision, compiled, train, ctx, **extra))
        print(f"  {rows[-1].loop:<9}{rows[-1].precision:<5}{'compiled' if compiled else '':<9}"
              f"{rows[-1].ms_per_step:9.1f} ms/step", flush=True)

    for loop in (bench_loop, hand_loop):
        for precision in PRECISIONS:
            measure(loop, precision, False, **({"keep": trained} if loop is hand_loop and precision == "tf32" else {}))
    for precision in ("fp32", "default"):
        measure(official_loop, precision, False)
    methods = method_steps(size, device, train, ctx)
    attack = autoattack_rate(trained[0], test, size, device, data)
    for loop in (bench_loop, hand_loop) if size.compile else ():
        for precision in ("bf16", "tf32"):
            if time.perf_counter() - began < budget_s:
                measure(loop, precision, True)
            else:
                skipped.append(f"{loop.__name__} {precision} compiled")
    reference = next(r for r in rows if (r.loop, r.precision, r.compiled) == ("bench", "tf32", False))
    flops_per_step = 3 * forward_flops(size.model, size.dataset) * (ctx.attack_steps + 1) * size.batch
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "size": asdict(size), "data": data, "rows": [asdict(r) for r in rows],
        "method_ms_per_step": methods, "autoattack": attack, "skipped": skipped,
        "cost_model_flops_per_s": flops_per_step / (reference.ms_per_step / 1000),
        "cost_model_flops_source": "bench loop, pgd_at, tf32, uncompiled",
        "cpu_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "seconds": time.perf_counter() - began,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def print_table(result: dict) -> None:
    print(f"{result['size']['model']} on {result['size']['dataset']} ({result['data']}), batch "
          f"{result['size']['batch']}, PGD-10 AT, {result['device']}, torch {result['torch']}")
    print(f"{'loop':<10}{'precision':<10}{'compiled':<10}{'ms/step':>9}{'s/epoch':>9}{'compile s':>11}{'peak GiB':>10}")
    for r in result["rows"]:
        compile_s = "" if r["compile_seconds"] is None else f"{r['compile_seconds']:.1f}"
        peak = "" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        print(f"{r['loop']:<10}{r['precision']:<10}{str(r['compiled']):<10}{r['ms_per_step']:>9.1f}"
              f"{r['epoch_seconds']:>9.1f}{compile_s:>11}{peak:>10}")
    print("method steps (tf32): " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["method_ms_per_step"].items()))
    aa = result["autoattack"]
    print(f"AutoAttack standard: {aa['images']} images in {aa['seconds']:.1f} s ({aa['images_per_s']:.1f}/s, "
          f"robust acc {aa['robust_acc']:.3f})")
    if result["skipped"]:
        print("skipped (time budget): " + ", ".join(result["skipped"]))
    print(f"cost model GPU throughput: {result['cost_model_flops_per_s'] / 1e12:.2f} TFLOP/s "
          f"({result['cost_model_flops_source']}); {result['seconds']:.0f} s in all")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny-CNN, a few steps: the CPU test of this script")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=None, help=f"timed steps per loop (default {FULL.steps}; tiny {TINY.steps})")
    p.add_argument("--out", type=Path, default=None, help=f"JSON path (default {DEFAULT_OUT}; tiny: a temp file)")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="start no compiled row after this many seconds (default 420, to end within 8 minutes)")
    args = p.parse_args()
    size = TINY if args.tiny else FULL
    if args.steps is not None:
        if args.steps < 1:
            p.error(f"--steps {args.steps}: must be >= 1")
        size = replace(size, steps=args.steps)
    out = args.out or (Path(tempfile.mkdtemp()) / "gpu_benchmark.json" if args.tiny else DEFAULT_OUT)
    print_table(run(size, torch.device(args.device), out, args.budget_s))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
