"""A rough cost model for planning: floating-point work of a run from its config, turned into hours on a GPU
and on this kind of 2-core CPU. Good to a factor of about two on CPU; it is for deciding what to launch, not for
reporting.

Work is counted in PGD-AT steps (3 forward FLOPs × (attack steps + 1) per image); a method's step is that times
its factor (`method_factor`): the ratio of its declared operation-count bound (`Method.step_bound`,
methods/core/step_bound.py) to PGD-AT's, times its measured/bound ratio relative to PGD-AT's where one was measured
(`MEASURED_OVER_BOUND`). The CPU throughput is calibrated on this kind of 2-core machine (tiny-CNN PGD-AT); the GPU
one (`gpu_throughput`) is the GPU benchmark's measurement when its JSON exists (bench/benchmarks/gpu.py writes
it; $BENCH_GPU_BENCHMARK or bench/benchmarks/gpu_benchmark.json), else an assumed H100 figure, and says which."""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import RunConfig
from bench.eval_store import Evaluation

if TYPE_CHECKING:
    from methods.core.base import Method

DEFAULT_EVALUATION = Evaluation()

TRAIN_SIZE = {"cifar10": 50_000, "cifar10-jpeg": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000,
              "fmnist": 60_000, "tinyimagenet": 100_000}
TEST_SIZE = {"svhn": 26_032, "tinyimagenet": 10_000}  # others: 10 000
GPU_FLOPS = 30e12  # assumed effective throughput of adversarial training on one H100, until the benchmark has run
GPU_BENCHMARK = Path(__file__).parent / "benchmarks" / "gpu_benchmark.json"  # bench/benchmarks/gpu.py's default --out
CPU_CORES = 2  # the cores CPU_FLOPS was measured on
CPU_FLOPS = 70e9  # the same on CPU_CORES cores (tiny-CNN PGD-AT on F-MNIST: ~8 min for 10 epochs)
AA_PASSES = 2_000  # forward+backward equivalents per image of standard AutoAttack (cascade on robust points)
# measured step time / its bound (python -m bench.benchmarks.step_cost --repeats 10, tiny-CNN on F-MNIST, 1 thread
# on a shared 2-core CPU, 2026-12-05; medians over 4 runs, CAAT's over the 2 runs after its subnormal-weight fix),
# keyed "method@fidelity" or "method"; methods not listed count as PGD-AT's ratio
MEASURED_SOURCE = "step_cost, tiny-CNN/F-MNIST, CPU, 2026-12-05"
MEASURED_OVER_BOUND = {"pgd_at": 1.00, "trades": 1.02, "caat": 1.08, "caat@code": 1.03, "bilaw": 1.02,
                       "bilaw_trades": 1.06, "bilaw_np": 1.04}


@dataclass(frozen=True)
class Throughput:
    flops_per_s: float
    source: str  # where the number comes from, for the dry-run line


def gpu_throughput() -> Throughput:
    """The GPU benchmark's measured effective FLOP/s (PGD-AT through the bench's loop) when its JSON exists,
    else the assumed GPU_FLOPS; `source` names which (file and device, or "assumed")."""
    path = Path(os.environ.get("BENCH_GPU_BENCHMARK", GPU_BENCHMARK))
    if path.is_file():
        result = json.loads(path.read_text())
        return Throughput(float(result["cost_model_flops_per_s"]),
                          f"measured by bench/benchmarks/gpu.py on {result['device']} ({path})")
    return Throughput(GPU_FLOPS, f"assumed {GPU_FLOPS / 1e12:g} TFLOP/s for an H100 (no {path})")


@dataclass(frozen=True)
class Factor:
    value: float  # step cost relative to one PGD-AT step
    source: str


@lru_cache(maxsize=None)
def probe_method(method: str, hp: tuple, attack_steps: int, fidelity: str, epochs: int, norm: str) -> Method:
    """`method` built on a tiny stand-in context (no data, no model of the run): enough to read its step bounds
    (methods.core.step_bound) before anything is trained."""
    from bench.data import Split
    from methods import MethodContext, build_method

    held = Split(torch.zeros(20, 1, 8, 8, dtype=torch.uint8), torch.arange(20) % 10)
    ctx = MethodContext(num_classes=10, eps=0.1, step_size=0.025, attack_steps=attack_steps, epochs=epochs,
                        steps_per_epoch=1, class_counts=(2,) * 10, heldout={"meta": held, "val": held, "val_meta": held},
                        device=torch.device("cpu"), fidelity=fidelity, new_model=lambda: torch.nn.Linear(64, 10),
                        image_shape=(1, 8, 8), batch_size=10, norm=norm)
    return build_method(method, dict(hp), ctx)


def probe(cfg: RunConfig) -> Method:
    """probe_method for a run's config."""
    return probe_method(cfg.method, tuple(cfg.hp), cfg.attack_steps, cfg.fidelity, cfg.epochs, cfg.norm)


@lru_cache(maxsize=None)
def _mean_bound_units(method: str, hp: tuple, attack_steps: int, fidelity: str, epochs: int, norm: str) -> float:
    """Forward-equivalents per image of one step of `method`, averaged over the run's epochs."""
    built = probe_method(method, hp, attack_steps, fidelity, epochs, norm)
    return statistics.mean(built.step_bound(e).units for e in range(epochs))


def method_factor(cfg: RunConfig) -> Factor:
    """The run's step cost relative to a PGD-AT step: bound ratio × measured/bound ratio (relative to PGD-AT's)."""
    def units(method, hp):
        return _mean_bound_units(method, hp, cfg.attack_steps, cfg.fidelity, cfg.epochs, cfg.norm)

    try:
        ratio = units(cfg.method, tuple(cfg.hp)) / units("pgd_at", ())
    except (ValueError, OSError, RuntimeError) as why:  # e.g. HAT's helper checkpoint is made by another run
        return Factor(1.0, f"no bound ({str(why).split('.')[0]}); counted as PGD-AT")
    base = cfg.method.split("+")[0]
    key = next((k for k in (f"{base}@{cfg.fidelity}", base) if k in MEASURED_OVER_BOUND), None)
    if key is not None:
        measured = MEASURED_OVER_BOUND[key] / MEASURED_OVER_BOUND["pgd_at"]
        return Factor(ratio * measured, f"step bound × measured/bound ({MEASURED_SOURCE})")
    return Factor(ratio, "step bound")


@dataclass(frozen=True)
class Cost:
    flops: float

    @property
    def gpu_hours(self) -> float:
        return self.flops / gpu_throughput().flops_per_s / 3600

    @property
    def cpu_hours(self) -> float:
        return self.flops / CPU_FLOPS / 3600

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops)


@lru_cache(maxsize=None)  # a pure function of two names; building a WRN to count it takes a second
def forward_flops(model: str, dataset: str) -> float:
    """FLOPs of one forward pass of one image, counted by torch on the real architecture."""
    from bench.data import DATASETS
    from bench.models import build_model

    info = DATASETS.get(dataset)
    c, h, _ = info.shape
    net = build_model(model, info.num_classes, c, h).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *info.shape))
    return float(counter.get_total_flops())


def run_cost(cfg: RunConfig, flops_per_image: float, evaluation: Any = DEFAULT_EVALUATION,
             trained: bool = False) -> Cost:
    """Training (attack steps + the update, times the method's measured step factor), per-epoch evaluation
    on each monitored set and the table's evaluation (bench.eval_store.Evaluation) of its checkpoints (None:
    none); a run already `trained` costs its evaluation only (an upper bound: stored evaluations are reused)."""
    images = min(cfg.train_limit or TRAIN_SIZE[cfg.dataset], TRAIN_SIZE[cfg.dataset])
    test = TEST_SIZE.get(cfg.dataset, 10_000)
    factor = method_factor(cfg).value
    step = 3 * flops_per_image  # forward + backward
    train = cfg.epochs * images * (cfg.attack_steps + 1) * factor
    per_epoch_eval = (cfg.epochs // cfg.eval_every) * (cfg.eval_n or test) * 21 * len(cfg.eval_attacks) / 2
    per_epoch_eval *= len(cfg.monitor_on)  # held-out splits are about as large as eval_n (1000 images)
    final = 0.0 if evaluation is None else len(evaluation.checkpoints) * (
        (evaluation.n or test) * 21 * sum(a != "aa" for a in evaluation.attacks)
        + ("aa" in evaluation.attacks) * (evaluation.aa_n or evaluation.n or test) * AA_PASSES)
    return Cost(step * (final if trained else train + per_epoch_eval + final))


def plan_cost(configs: list[RunConfig], evaluations: list[Any] | None = None,
              trained: list[bool] | None = None) -> Cost:
    """The cost of training `configs` (unless `trained`) and evaluating each with its evaluation (default: the
    bench's)."""
    evaluations = [DEFAULT_EVALUATION] * len(configs) if evaluations is None else evaluations
    trained = [False] * len(configs) if trained is None else trained
    return sum((run_cost(cfg, forward_flops(cfg.model, cfg.dataset), ev, done)
                for cfg, ev, done in zip(configs, evaluations, trained)), Cost(0.0))
