"""The run configuration: everything that determines a run's numbers, and nothing else.

Execution details (device, data root, where runs are stored) are deliberately not here, so the
same run has the same identity on a laptop and on a cluster. Every field is coerced to its declared type and
range-checked when a config is built (from the command line, an experiment file or a stored config.json), so a
bad value is refused before any folder, lease or submission exists. Each field's `help` metadata is the text of
its generated `bench train` flag (bench/cli.py).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.data.scenarios import ScenarioConfig
from bench.hparams import RunFacts, convert


RUN_ID = re.compile(r"[A-Za-z0-9.+_-]+-[0-9a-f]{10}")  # RunConfig.run_id(): readable prefix, hash


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A field with its command-line help text."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class RunConfig:
    method: str = _f("pgd_at", "training method, with add-ons after '+' (pgd_at+ema; see `list methods`)")
    hp: tuple[tuple[str, Any], ...] = _f(
        (), "method hyperparameter override, repeatable (--hp beta=6; add-ons' prefixed: --hp ema.decay=0.88); "
            "stored typed, sorted, without values equal to the default")
    dataset: str = _f("fmnist", "dataset (see `list datasets`)")
    model: str = _f("tiny-cnn", "architecture (see `list models`)")
    normalize: bool = _f(False, "put the dataset's mean/std layer in the model (CFA, Wong); off in TRADES-lineage "
                                "codes")
    augment: bool = _f(True, "train with the dataset's default augmentation (crop/flip where it has one)")
    epochs: int = _f(10, "training epochs")
    train_limit: int | None = _f(None, "train on the first N images of the (scenario) training set (smoke runs); "
                                       "default: all")
    batch_size: int = _f(128, "training minibatch size")
    lr: float = _f(0.1, "initial (piecewise) or peak (onecycle, cyclic) learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum (UIAT's and HAT's recipe)")
    weight_decay: float = _f(5e-4, "SGD weight decay, applied to all parameters")
    schedule: str = _f("piecewise", "learning-rate schedule: piecewise, onecycle, cyclic, cosine or constant")
    milestones: tuple[int, ...] = _f((), "piecewise: epochs (≥ 1) where lr is multiplied by --gamma (default: 50% "
                                         "and 75% of training, never epoch 0: a 1-epoch run trains at --lr)")
    gamma: float = _f(0.1, "piecewise: lr factor at each milestone")
    norm: Literal["linf", "l2"] = _f("linf", "threat model of the training and evaluation attacks (l2: needs --eps)")
    eps: float | None = _f(None, "budget in pixel units (default: the dataset's L∞ one; required with --norm l2)")
    step_size: float | None = _f(None, "training attack step (default: the dataset's; l2: eps/4)")
    eval_step_size: float | None = _f(None, "step of the evaluation attacks (default: the training attack's)")
    attack_steps: int = _f(10, "iterations of the training attack (PGD-K); evaluation attacks have their own "
                               "(pgd20: 20)")
    seed: int = _f(0, "seed of the weights, batch order, augmentation and attacks' random starts (part of the run "
                      "id)")
    eval_every: int = _f(1, "epochs between per-epoch evaluations on the first eval_n test images")
    eval_attacks: tuple[str, ...] = _f(("clean", "pgd20"), "per-epoch evaluations (comma list; see `list attacks`)")
    eval_n: int | None = _f(1000, "per-epoch evaluation on the first N test images (none: all)")
    fidelity: Literal["paper", "code"] = _f(
        "paper", "follow the paper text, or reproduce the official code's documented quirks where they differ "
                 "(CAAT's code: meta step every 50 batches, ε ×1.25, frozen BN; see the method's docstring)")
    precision: Literal["default", "fp32", "tf32", "bf16"] = _f(
        "default", "numerics of training (bench/precision.py): default = PyTorch's defaults, as the papers' codes ran "
                   "(fp32 on CPU; on CUDA TF32 convolutions, fp32 matmuls); fp32 = TF32 off; tf32 = TF32 convolutions "
                   "and matmuls; bf16 = bf16 autocast of the network, its logits and losses in fp32 (opt-in). "
                   "Evaluation (per-epoch, final, AutoAttack) always runs at default")
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    init_from: str | None = _f(None, "run id of a finished run in the same store: its last weights start this run "
                                     "(a hot start to fine-tune); not its optimiser or method state", metavar="RUN_ID")
    monitor_on: tuple[str, ...] = _f(
        ("test",), "sets evaluated every eval_every epochs, which selection rules read: 'test' (the first eval_n "
                   "test images) or a held-out split of the scenario (BiLAW's val_stop, CFA's val)")

    def __post_init__(self) -> None:
        from methods import canonical_hparams, canonical_name

        hints = typing.get_type_hints(RunConfig)
        for f in dataclasses.fields(self):
            if f.name not in ("hp", "scenario"):
                object.__setattr__(self, f.name, convert("", f.name, hints[f.name], getattr(self, f.name)))
        object.__setattr__(self, "scenario", _scenario(self.scenario))
        object.__setattr__(self, "method", canonical_name(self.method))
        given = dict(_pairs(self.hp))
        if len(given) != len(_pairs(self.hp)):
            raise ValueError(f"hp={self.hp!r} names a hyperparameter twice")
        object.__setattr__(self, "hp", tuple(sorted(canonical_hparams(self.method, given, None).items())))
        self._check()
        _ = self.hp_dict  # resolving the placeholders checks them too (CCM's λ₁ needs a base with a default)

    def _check(self) -> None:
        """Ranges: each refusal names the field, its value and what is allowed."""
        def need(name: str, ok: bool, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed; allowed: {allowed}")

        for name in ("epochs", "batch_size", "eval_every"):
            need(name, getattr(self, name) >= 1, "an integer ≥ 1")
        for name in ("train_limit", "eval_n"):
            need(name, getattr(self, name) is None or getattr(self, name) >= 1, "an integer ≥ 1, or None for the "
                 "whole split")
        need("lr", self.lr >= 0, "a finite number ≥ 0 (0 keeps the initial weights: a control run)")
        need("momentum", 0 <= self.momentum <= 1, "a number in [0, 1]")
        need("weight_decay", self.weight_decay >= 0, "a number ≥ 0")
        need("gamma", self.gamma > 0, "a number > 0")
        need("seed", self.seed >= 0, "an integer ≥ 0")
        need("attack_steps", self.attack_steps >= 0, "an integer ≥ 0")
        need("milestones", all(m >= 1 for m in self.milestones),
             "epochs ≥ 1 (a milestone at 0 would start training at lr·gamma: lower --lr instead; one past the last "
             "epoch is kept, so a run cut at a milestone shares the longer run's schedule, as CFA's hot start does)")
        if self.norm == "l2" and self.eps is None:
            raise ValueError("norm='l2' needs an explicit eps (--eps): the datasets' default budgets are L∞ ones")
        need("eps", self.eps is None or 0 < self.eps <= self._max_eps(),
             f"None (the dataset's default) or a number in (0, {self._max_eps():.4g}] (inputs lie in [0, 1]; "
             f"{self._max_eps():.4g} spans the whole {self.norm} image space)")
        for name in ("step_size", "eval_step_size"):
            need(name, getattr(self, name) is None or getattr(self, name) > 0, "a number > 0, or None for the "
                 "default step")
        self._check_attack_names()
        if self.init_from is not None and not RUN_ID.fullmatch(self.init_from):
            raise ValueError(f"init_from={self.init_from!r} is not a run id (like "
                             "'trades_cifar10_preact-resnet18-b_s0-3fa1c2d9e0'; see `python -m bench status`)")

    def _check_attack_names(self) -> None:
        """Unknown per-epoch attack names, refused under the field that gave them."""
        from bench.evaluate import EVAL_ATTACKS
        from bench.registry import UnknownNameError

        for attack in self.eval_attacks:
            try:
                EVAL_ATTACKS.get(attack)
            except UnknownNameError as err:
                raise ValueError(f"eval_attacks: {err}") from None

    def _max_eps(self) -> float:
        """1 for L∞ (inputs lie in [0, 1]); for ℓ2 the diameter √(C·H·W) of the dataset's image cube."""
        if self.norm == "linf":
            return 1.0
        from bench.data import DATASETS

        return math.sqrt(math.prod(DATASETS.get(self.dataset).shape))

    @property
    def hp_dict(self) -> dict[str, Any]:
        """The method's (and add-ons') hyperparameters that differ from their defaults, typed, with placeholder
        defaults resolved for this run (CAAT's `meta_every=0` → 1 or 50 by fidelity): what trains, and what
        config.json's `method_hparams` records."""
        from methods import canonical_hparams

        facts = RunFacts(self.method.split("+")[0], self.fidelity, self.attack_steps, self.eps, self.dataset)
        return canonical_hparams(self.method, dict(self.hp), facts)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), allow_nan=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run-config field(s) {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def overrides(self) -> dict[str, Any]:
        """The fields that differ from the defaults, JSON-ready, with `hp` resolved (`hp_dict`): what makes this
        run this run, so equal trainings share one id."""
        mine = {**self.to_dict(), "hp": [list(p) for p in sorted(self.hp_dict.items())]}
        return {k: v for k, v in mine.items() if v != _default_dict()[k]}

    def run_id(self) -> str:
        """Readable prefix + hash of the non-default config, e.g. `trades_fmnist_tiny-cnn_s0-3fa1c2d9e0`."""
        digest = hashlib.sha256(json.dumps(self.overrides(), sort_keys=True).encode()).hexdigest()[:10]
        prefix = re.sub(r"[^A-Za-z0-9.+_-]", "-", f"{self.method}_{self.dataset}_{self.model}_s{self.seed}")
        return f"{prefix}-{digest}"


@functools.cache
def _default_dict() -> dict[str, Any]:
    return RunConfig().to_dict()


def _scenario(value: Any) -> ScenarioConfig:
    """A ScenarioConfig with typed fields (imbalance 100 == 100.0), from an instance or a stored dict."""
    from bench.hparams import build

    return build(ScenarioConfig, dataclasses.asdict(value) if isinstance(value, ScenarioConfig) else dict(value))


def _pairs(hp: Any) -> list[tuple[Any, Any]]:
    return list(hp.items()) if isinstance(hp, dict) else [tuple(p) for p in hp]
