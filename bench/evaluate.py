"""Test-time evaluation: clean and adversarial accuracy, overall and per class (the papers' evaluation sections).

Evaluation must not disturb the run it is part of: the model is put in eval mode for everything,
attacks included (every official evaluation script), and every submodule's training flag is restored afterwards;
weights and BN buffers are never written; the random PGD starts come from a private generator
seeded from `EvalConfig.seed` (per attack, so an attack's numbers do not depend on which other
attacks ran before it), leaving the caller's global RNG untouched. All accuracies are fractions
(see `bench.metrics.percent` for display).
"""
from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from bench import metrics
from bench.attacks import autoattack, model_mode, pgd
from bench.attacks.pgd import NORMS
from bench.precision import EVALUATION
from bench.progress import progress
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.data import Split

KINDS = ("clean", "pgd", "cw", "aa")
INITS = ("uniform", "normal", "none")
CIFAR_CW_STEP = 0.01  # HAT eval-adv.py's CW step for CIFAR (UIAT's CW column [AMBIG])
TRIPLE_ATTACKS = ("clean", "pgd20")  # FRL/CAAT error triple: natural vs PGD-20 (FRL §3 and CAAT §4.1)
AA_NORM = {"linf": "Linf", "l2": "L2"}  # the bench's norm names → AutoAttack's


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation attack in the `norm` ball of radius `eps`. `n`: only the first n test images; None → all.

    kind "pgd" ascends cross-entropy, "cw" the CW margin with confidence `kappa`, "aa" is standard
    AutoAttack (steps/step_size/init unused). With `restarts` > 1 (pgd/cw only) a sample counts as
    robust only if it survives every restart (the worst case per sample). `norm` is recorded for
    "clean" too, so every spec of a run names the run's threat model.
    """

    name: str
    kind: str
    eps: float = 0.0
    steps: int = 0
    step_size: float = 0.0
    init: str = "uniform"
    kappa: float = 0.0
    restarts: int = 1
    n: int | None = None
    norm: str = "linf"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"attack kind {self.kind!r} unknown; choose one of {KINDS}")
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} unknown; choose one of {NORMS}")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r} unknown; choose one of {INITS}")
        for field in ("eps", "steps", "step_size", "kappa"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field}={getattr(self, field)} must be ≥ 0")
        if self.restarts < 1:
            raise ValueError(f"restarts={self.restarts} must be ≥ 1")
        if self.n is not None and self.n < 1:
            raise ValueError(f"n={self.n} must be ≥ 1 or None (the whole test set)")
        if self.kind in ("pgd", "cw") and (self.steps < 1 or self.step_size <= 0 or self.eps <= 0):
            raise ValueError(f"{self.kind} attack {self.name!r} needs eps > 0, steps ≥ 1 and step_size > 0")
        if self.kind == "aa" and self.eps <= 0:
            raise ValueError(f"AutoAttack {self.name!r} needs eps > 0")
        if self.kind in ("clean", "aa") and self.restarts != 1:
            raise ValueError(f"restarts={self.restarts} only applies to pgd/cw attacks, not {self.kind!r} "
                             "(standard AutoAttack has its own restarts)")


# Each standard evaluation is a factory (eps, step, dataset, norm) → AttackSpec, where eps and step are the
# run's budget and step size (the dataset's defaults unless overridden), dataset its name and norm its
# threat model ("linf" or "l2").
EVAL_ATTACKS: Registry[Callable[..., AttackSpec]] = Registry("evaluation attack")


@EVAL_ATTACKS.register("clean")
def clean(eps: float = 0.0, step: float = 0.0, dataset: str = "", norm: str = "linf") -> AttackSpec:
    return AttackSpec("clean", "clean", init="none", norm=norm)


@EVAL_ATTACKS.register("pgd20")
def pgd20(eps: float, step: float, dataset: str = "", norm: str = "linf") -> AttackSpec:
    """PGD-20, uniform start, CE, one restart (UIAT, FRL/CAAT: 8/255 with step 2/255 on CIFAR)."""
    return AttackSpec("pgd20", "pgd", eps=eps, steps=20, step_size=step, init="uniform", norm=norm)


@EVAL_ATTACKS.register("pgd10")
def pgd10(eps: float, step: float, dataset: str = "", norm: str = "linf") -> AttackSpec:
    """PGD-10, uniform start, CE (CFA's model selection and FAWA validation)."""
    return AttackSpec("pgd10", "pgd", eps=eps, steps=10, step_size=step, init="uniform", norm=norm)


@EVAL_ATTACKS.register("cw")
def cw(eps: float, step: float, dataset: str = "", norm: str = "linf") -> AttackSpec:
    """CW (HAT variant): κ = 0, 40 steps, uniform start; step 0.01 for L∞ on CIFAR, else the evaluation step."""
    step_size = CIFAR_CW_STEP if dataset.startswith("cifar") and norm == "linf" else step
    return AttackSpec("cw", "cw", eps=eps, steps=40, step_size=step_size, init="uniform", kappa=0.0, norm=norm)


@EVAL_ATTACKS.register("aa")
def aa(eps: float, step: float = 0.0, dataset: str = "", norm: str = "linf", n: int | None = None) -> AttackSpec:
    """Standard AutoAttack (norm "Linf" or "L2"), optionally on the first n test images only."""
    return AttackSpec("aa", "aa", eps=eps, init="none", n=n, norm=norm)


def attack_specs(names: str | Iterable[str], *, eps: float, step: float, dataset: str = "",
                 norm: str = "linf") -> tuple[AttackSpec, ...]:
    """Specs for registered names, given as an iterable or a comma list ("clean,pgd20,aa")."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    return tuple(EVAL_ATTACKS.get(name)(eps, step, dataset, norm) for name in names)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. `aa_n` gives AutoAttack specs without their own `n` the first aa_n images."""

    attacks: tuple[AttackSpec, ...]
    batch_size: int = 500
    aa_n: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.attacks]
        if not names:
            raise ValueError("EvalConfig needs at least one attack")
        if len(set(names)) != len(names):
            raise ValueError(f"attack names must be unique; got {names}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be ≥ 1")
        if self.aa_n is not None and self.aa_n < 1:
            raise ValueError(f"aa_n={self.aa_n} must be ≥ 1 or None (the whole test set)")

    def resolved(self, spec: AttackSpec) -> AttackSpec:
        if spec.kind == "aa" and spec.n is None and self.aa_n is not None:
            return dataclasses.replace(spec, n=self.aa_n)
        return spec


def _attack_seed(seed: int, name: str) -> int:
    """A stable per-attack seed (crc32 is stable across processes, unlike hash())."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63


@torch.no_grad()
def _hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1) == y


def _batch_hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec,
                generator: torch.Generator, seed: int) -> torch.Tensor:
    if spec.kind == "clean":
        return _hits(model, x, y)
    if spec.kind == "aa":
        with torch.enable_grad():  # the caller may have called us under no_grad
            adv = autoattack(model, x, y, eps=spec.eps, norm=AA_NORM[spec.norm], version="standard", seed=seed,
                             batch_size=x.shape[0])
        return _hits(model, adv, y)
    hits = torch.ones_like(y, dtype=torch.bool)
    for _ in range(spec.restarts):  # fresh random starts from the same generator
        with torch.enable_grad():
            adv = pgd(model, x, y, eps=spec.eps, step_size=spec.step_size, steps=spec.steps, norm=spec.norm,
                      init=spec.init, loss="ce" if spec.kind == "pgd" else "cw", kappa=spec.kappa,
                      bn_mode="eval", generator=generator)
        hits &= _hits(model, adv, y)
    return hits


def _to_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.is_floating_point():
        return x.float()
    raise ValueError(f"images must be uint8 (0..255) or float in [0, 1]; got dtype {x.dtype}")


def attack_hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, *,
                batch_size: int, seed: int, device: torch.device | str) -> np.ndarray:
    """Per-sample robustness (bool, numpy) of the first `spec.n` images under `spec`, batched.

    Images may stay uint8 on the CPU: each batch is moved to `device` and converted there.
    The model must already be on `device`; it runs in eval mode throughout, at the evaluation precision
    (bench.precision.EVALUATION: PyTorch's defaults, no autocast) whatever the run trained in or the caller set.
    """
    device = torch.device(device)
    n = len(x) if spec.n is None else min(spec.n, len(x))
    seed = _attack_seed(seed, spec.name)
    generator = torch.Generator(device=device).manual_seed(seed)
    hits = []
    with model_mode(model, False), EVALUATION.scope(device):
        for start in progress(range(0, n, batch_size), desc=spec.name, total=-(-n // batch_size)):
            stop = min(start + batch_size, n)
            xb = _to_float(x[start:stop].to(device, non_blocking=True))
            yb = y[start:stop].to(device, dtype=torch.long, non_blocking=True)
            hits.append(_batch_hits(model, xb, yb, spec, generator, seed).cpu())
    return torch.cat(hits).numpy()


def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     cfg: EvalConfig, device: torch.device | str) -> dict[str, Any]:
    """Evaluate every attack of `cfg` on (x, y); see `evaluate` for the result's layout."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as images, at least one; got {len(x)} images, {len(y)} labels")
    if num_classes < 4 and any(spec.kind == "aa" for spec in cfg.attacks):
        raise ValueError(f"standard AutoAttack's DLR losses need at least 4 classes; got num_classes={num_classes}")
    labels = y.cpu().numpy()
    results: dict[str, Any] = {"num_classes": num_classes, "num_test": len(x), "seed": cfg.seed, "attacks": {}}
    hits_by_name = {}
    for spec in map(cfg.resolved, cfg.attacks):
        hits = attack_hits(model, x, y, spec, batch_size=cfg.batch_size, seed=cfg.seed, device=device)
        hits_by_name[spec.name] = hits
        results["attacks"][spec.name] = attack_summary(spec, hits, labels, num_classes)
    if all(name in hits_by_name for name in TRIPLE_ATTACKS):
        results["error_triple"] = triple_summary(*(hits_by_name[name] for name in TRIPLE_ATTACKS), labels, num_classes)
    return metrics.json_safe(results)


def attack_summary(spec: AttackSpec, hits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """One attack's entry of `evaluate`'s result from its per-sample hits on the first len(hits) images."""
    per_class = metrics.per_class_from_correct(hits, labels[: len(hits)], num_classes)
    worst, worst_acc = metrics.worst_class(per_class)
    return metrics.json_safe({
        "spec": dataclasses.asdict(spec),
        "n": len(hits),
        "acc": float(hits.mean()),
        "per_class": per_class,
        "worst_class": worst,
        "worst_class_acc": worst_acc,
        "worst20_mean": metrics.worst_fraction_mean(per_class, 0.2),
    })


def triple_summary(clean_hits: np.ndarray, adv_hits: np.ndarray, labels: np.ndarray,
                   num_classes: int) -> dict[str, Any]:
    """FRL/CAAT's error triple from natural and PGD-20 hits, on the images both evaluated (test-set prefixes)."""
    m = min(len(clean_hits), len(adv_hits))
    return metrics.json_safe({"attacks": list(TRIPLE_ATTACKS), "n": m,
                              **metrics.error_triple(clean_hits[:m], adv_hits[:m], labels[:m], num_classes)})


def evaluate(model: nn.Module, test: "Split", num_classes: int, cfg: EvalConfig,
             device: torch.device | str) -> dict[str, Any]:
    """Clean and adversarial accuracy of `model` on the test split, overall and per class.

    Returns JSON-ready data, accuracies as fractions, absent classes' accuracies as None:
      {"num_classes", "num_test", "seed",
       "attacks": {name: {"spec", "n" (images used), "acc", "per_class", "worst_class",
                          "worst_class_acc", "worst20_mean"}},
       "error_triple": {"attacks", "n", "nat"|"bdy"|"rob": {"avg", "worst", "worst_class", "per_class"}}}
    "error_triple" (FRL/CAAT, natural vs PGD-20 on the same images) appears only when both "clean"
    and "pgd20" are among the attacks.
    """
    return evaluate_tensors(model, test.x, test.y, num_classes, cfg, device)
