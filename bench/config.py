"""The run configuration: everything that determines a run's numbers, and nothing else.

Execution details (device, data root, where runs are stored) are deliberately not here, so the
same run has the same identity on a laptop and on a cluster.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.data.scenarios import ScenarioConfig


RUN_ID = re.compile(r"[A-Za-z0-9.+_-]+-[0-9a-f]{10}")  # RunConfig.run_id(): readable prefix, hash


@dataclass(frozen=True)
class RunConfig:
    method: str = "pgd_at"
    hp: tuple[tuple[str, str], ...] = ()  # method hyperparameter overrides, sorted (key, value) pairs
    dataset: str = "fmnist"
    model: str = "tiny-cnn"
    normalize: bool = False  # mean/std layer inside the model (CFA, Wong); off in TRADES-lineage codes
    augment: bool = True  # the dataset's default train augmentation (crop/flip where it has one)
    epochs: int = 10
    train_limit: int | None = None  # train on the first N images of the (scenario) training set: smoke runs
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "piecewise"
    milestones: tuple[int, ...] = ()  # piecewise: epochs at which lr *= gamma; () → 50% and 75%
    gamma: float = 0.1
    norm: Literal["linf", "l2"] = "linf"  # threat model of the training and evaluation attacks
    eps: float | None = None  # None → the dataset's default L∞ budget (an ℓ2 run must give its own)
    step_size: float | None = None  # None → the dataset's default step (ℓ2: eps / 4)
    eval_step_size: float | None = None  # step of the evaluation attacks; None → the training step
    attack_steps: int = 10
    seed: int = 0
    eval_every: int = 1  # epochs between evaluations on the first eval_n test images
    eval_attacks: tuple[str, ...] = ("clean", "pgd20")
    eval_n: int | None = 1000
    fidelity: Literal["paper", "code"] = "paper"
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    init_from: str | None = None  # run id of a finished run in the same store: its last weights start this
    # run (a hot start to fine-tune); not its optimiser or method state
    monitor_on: tuple[str, ...] = ("test",)  # sets evaluated every eval_every epochs, what selection rules read:
    # "test" (the first eval_n test images) or a held-out split of the scenario (BiLAW's "val_stop", CFA's "val")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be ≥ 1")
        for name in ("train_limit", "eval_n"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be ≥ 1, or None for the whole split")
        if self.eval_step_size is not None and not self.eval_step_size > 0:
            raise ValueError(f"eval_step_size={self.eval_step_size} must be > 0, or None for the training step")
        if any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones={list(self.milestones)}: each must be an epoch ≥ 1 (a milestone at 0 "
                             "would start training at lr·gamma; lower --lr instead)")
        if self.attack_steps < 0:
            raise ValueError(f"attack_steps={self.attack_steps} must be ≥ 0")
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"norm={self.norm!r}; choose 'linf' or 'l2'")
        if self.norm == "l2" and self.eps is None:
            raise ValueError("norm='l2' needs an explicit eps (--eps): the datasets' default budgets are L∞ ones")
        if self.fidelity not in ("paper", "code"):
            raise ValueError(f"fidelity={self.fidelity!r}; choose 'paper' or 'code'")
        if self.init_from is not None and not RUN_ID.fullmatch(self.init_from):
            raise ValueError(f"init_from={self.init_from!r} is not a run id (like "
                             "'trades_cifar10_preact-resnet18-b_s0-3fa1c2d9e0'; see `python -m bench status`)")

    @property
    def hp_dict(self) -> dict[str, str]:
        return dict(self.hp)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown run-config field(s) {unknown}; valid: {sorted(known)}")
        values = dict(data)
        if "scenario" in values and isinstance(values["scenario"], dict):
            values["scenario"] = ScenarioConfig(**values["scenario"])
        if "hp" in values:
            values["hp"] = tuple(sorted((str(k), str(v)) for k, v in _pairs(values["hp"])))
        for name in ("milestones", "eval_attacks", "monitor_on"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def overrides(self) -> dict[str, Any]:
        """The fields that differ from the defaults, JSON-ready: what makes this run this run."""
        default = RunConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != default[k]}

    def run_id(self) -> str:
        """Readable prefix + hash of the non-default config, e.g. `trades_fmnist_tiny-cnn_s0-3fa1c2d9e0`."""
        digest = hashlib.sha256(json.dumps(self.overrides(), sort_keys=True).encode()).hexdigest()[:10]
        prefix = re.sub(r"[^A-Za-z0-9.+_-]", "-", f"{self.method}_{self.dataset}_{self.model}_s{self.seed}")
        return f"{prefix}-{digest}"


def _pairs(hp: Any) -> list[tuple[Any, Any]]:
    return list(hp.items()) if isinstance(hp, dict) else [tuple(p) for p in hp]
