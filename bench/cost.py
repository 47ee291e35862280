"""A rough cost model for planning: floating-point work of a run from its config, turned into hours on an
H100 and on this kind of 2-core CPU. Good to a factor of about two on CPU; it is for deciding what to launch, not for
reporting. The CPU throughput is calibrated on this kind of 2-core machine (tiny-CNN PGD-AT); the H100 one is an
assumption not yet measured (training runs under bf16 autocast on CUDA, so it is likely pessimistic)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.config import RunConfig
from bench.eval_store import Evaluation

DEFAULT_EVALUATION = Evaluation()

TRAIN_SIZE = {"cifar10": 50_000, "cifar10-jpeg": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000,
              "fmnist": 60_000, "tinyimagenet": 100_000}
TEST_SIZE = {"svhn": 26_032, "tinyimagenet": 10_000}  # others: 10 000
GPU_FLOPS = 30e12  # assumed effective throughput of adversarial training on one H100 (not measured yet)
CPU_CORES = 2  # the cores CPU_FLOPS was measured on
CPU_FLOPS = 70e9  # the same on CPU_CORES cores (tiny-CNN PGD-AT on F-MNIST: ~8 min for 10 epochs)
AA_PASSES = 2_000  # forward+backward equivalents per image of standard AutoAttack (cascade on robust points)
METHOD_FACTOR = {  # step cost relative to one PGD-AT step, measured by bench/benchmarks/step_cost.py
    "caat": 4.9, "bilaw": 1.8, "bilaw_trades": 2.2, "bilaw_np": 1.8, "trades": 1.1, "mart": 1.1, "hat": 1.2,
    "uiat": 1.2, "iat": 1.2, "natural": 1 / 11,
}


@dataclass(frozen=True)
class Cost:
    flops: float

    @property
    def gpu_hours(self) -> float:
        return self.flops / GPU_FLOPS / 3600

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
    factor = METHOD_FACTOR.get(cfg.method.split("+")[0], 1.0)
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
