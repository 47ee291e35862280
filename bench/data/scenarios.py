"""Training-set scenarios of the papers (CAAT §4.1, FRL §5, CFA §5.1, BiLAW §5.1): held-out meta/validation sets, long tail, label noise.

Held-out sets are carved out first and stay clean and balanced; the test set is never touched. All draws
come from one numpy RandomState(seed) in the order of CAAT's code (`NLT_CIFAR.build_dataloader`), so the
same seed gives its index lists and labels: (1) the long-tail count list is shuffled (`lt_order=shuffled`),
(2) each class's indices are shuffled, class by class (caat_meta, bilaw), (3) the transition matrix is drawn
(flip1/flip2) and (4) one noisy label per kept sample, over the kept indices class by class in their
shuffled order. The training split itself is stored in dataset order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.data.noise import NOISE_KINDS, resample_labels, transition_matrix
from bench.data.split import Split

HELDOUT_KINDS = ("caat_meta", "frl_meta", "cfa_val", "bilaw")
LT_PROFILES = ("exp", "step")
LT_ORDERS = ("ordered", "shuffled")


def _one_of(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r}; allowed: {', '.join(map(repr, allowed))}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class ScenarioConfig:
    heldout: str | None = None  # caat_meta | frl_meta | cfa_val | bilaw
    # Per class (per set for bilaw); None → 300 (caat/frl), round(2% of the class) (cfa), 1000 // C (bilaw).
    heldout_per_class: int | None = None
    imbalance: float = 1.0  # long-tail imbalance factor IF = n_max / n_min; 1 = balanced
    lt_profile: str = "exp"  # exp: n_c = int(n_max / IF^(c/(C-1))) (Cui et al.); step: half n_max, half n_max/IF
    lt_order: str = "ordered"  # ordered: class 0 is the head; shuffled: count list shuffled (CAAT code)
    n_max: int | None = None  # None → the smallest class size left after the held-out split
    noise: str | None = None  # uniform | flip1 | flip2 | pair
    noise_ratio: float = 0.0
    seed: int = 100  # CAAT's default

    def __post_init__(self) -> None:
        _one_of("heldout", self.heldout, (None, *HELDOUT_KINDS))
        _one_of("lt_profile", self.lt_profile, LT_PROFILES)
        _one_of("lt_order", self.lt_order, LT_ORDERS)
        _one_of("noise", self.noise, (None, *NOISE_KINDS))
        if self.heldout_per_class is not None and not (_is_int(self.heldout_per_class) and self.heldout_per_class >= 1):
            raise ValueError(f"heldout_per_class={self.heldout_per_class!r}; allowed: None or an int ≥ 1")
        if self.heldout_per_class is not None and self.heldout is None:
            raise ValueError(f"heldout_per_class={self.heldout_per_class} given without a heldout kind")
        if isinstance(self.imbalance, bool) or not isinstance(self.imbalance, (int, float)) or not self.imbalance >= 1:
            raise ValueError(f"imbalance={self.imbalance!r}; allowed: a number ≥ 1 (1 = balanced)")
        if self.n_max is not None and not (_is_int(self.n_max) and self.n_max >= 1):
            raise ValueError(f"n_max={self.n_max!r}; allowed: None or an int ≥ 1")
        if isinstance(self.noise_ratio, bool) or not isinstance(self.noise_ratio, (int, float)) \
                or not 0 <= self.noise_ratio <= 1:
            raise ValueError(f"noise_ratio={self.noise_ratio!r}; allowed: a number in [0, 1]")
        if self.noise is None and self.noise_ratio != 0:
            raise ValueError(f"noise_ratio={self.noise_ratio} needs a noise kind; allowed: {', '.join(NOISE_KINDS)}")
        if not _is_int(self.seed):
            raise ValueError(f"seed={self.seed!r}; allowed: an int")


@dataclass
class Scenario:
    train: Split  # labels noisy where the config says so
    heldout: dict[str, Split]  # clean: "meta" (caat/frl), "val" (cfa), "val_meta" + "val_stop" (bilaw)
    clean_labels: torch.Tensor  # train labels before noise, aligned with train.y
    indices: torch.Tensor  # positions of the training samples in the source split
    heldout_indices: dict[str, torch.Tensor]
    record: dict[str, Any]  # JSON-ready: what was actually built


def heldout_taken(cfg: ScenarioConfig, class_sizes: list[int]) -> list[int]:
    """How many samples of each class the held-out split takes (before any draw: the long tail needs it first)."""
    kind, k = cfg.heldout, cfg.heldout_per_class
    if kind is None:
        taken = [0] * len(class_sizes)
    elif kind == "cfa_val":  # 2% of each class (CFA code)
        taken = [k if k is not None else round(0.02 * n) for n in class_sizes]
    elif kind in ("frl_meta", "caat_meta"):  # 300 per class (FRL, CAAT codes)
        taken = [300 if k is None else k] * len(class_sizes)
    else:  # bilaw: two disjoint balanced sets
        taken = [2 * (max(1, 1000 // len(class_sizes)) if k is None else k)] * len(class_sizes)
    for c, (n, have) in enumerate(zip(taken, class_sizes)):
        if n > have:
            raise ValueError(f"heldout={kind!r} takes {n} samples of class {c}, which has only {have}")
    return taken


def heldout_split(y: np.ndarray, num_classes: int, cfg: ScenarioConfig,
                  rng: np.random.RandomState) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """(remaining indices per class, in the order later steps take them from; held-out index sets)."""
    by_class = [np.flatnonzero(y == c) for c in range(num_classes)]
    kind = cfg.heldout
    taken = heldout_taken(cfg, [len(i) for i in by_class])
    if kind is None:
        return by_class, {}
    if kind == "cfa_val":  # first 2% of each class in dataset order (CFA code)
        return ([i[n:] for i, n in zip(by_class, taken)],
                {"val": np.concatenate([i[:n] for i, n in zip(by_class, taken)])})
    k = taken[0]
    if kind == "frl_meta":  # last k of each class in dataset order: 4700–4999 for CIFAR (FRL code)
        return [i[:len(i) - k] for i in by_class], {"meta": np.concatenate([i[len(i) - k:] for i in by_class])}
    for i in by_class:  # caat_meta, bilaw: seeded per-class shuffle, class by class (CAAT code)
        rng.shuffle(i)
    if kind == "caat_meta":
        return [i[k:] for i in by_class], {"meta": np.concatenate([i[:k] for i in by_class])}
    k //= 2  # bilaw: two disjoint balanced sets
    return [i[2 * k:] for i in by_class], {"val_meta": np.concatenate([i[:k] for i in by_class]),
                                           "val_stop": np.concatenate([i[k:2 * k] for i in by_class])}


def long_tail_counts(cfg: ScenarioConfig, available: list[int], rng: np.random.RandomState) -> list[int]:
    """Training samples per class; `available` when balanced (imbalance 1)."""
    if cfg.imbalance == 1:
        if cfg.lt_order == "shuffled":  # CAAT's code (imbalanced_factor=1) shuffles its equal counts: same draws
            rng.shuffle(list(available))
        return list(available)
    c = len(available)
    if c < 2:
        raise ValueError(f"a long tail needs at least 2 classes, got {c}")
    n_max = cfg.n_max if cfg.n_max is not None else min(available)
    if cfg.lt_profile == "exp":
        counts = [int(n_max / cfg.imbalance ** (k / (c - 1))) for k in range(c)]
    else:
        counts = [n_max if k < c // 2 else int(n_max / cfg.imbalance) for k in range(c)]
    if cfg.lt_order == "shuffled":
        rng.shuffle(counts)
    for k, (want, have) in enumerate(zip(counts, available)):
        if want > have:
            raise ValueError(f"long tail wants {want} samples of class {k}, only {have} left after the held-out "
                             f"split; lower n_max={cfg.n_max}")
    return counts


def build_scenario(train: Split, num_classes: int, cfg: ScenarioConfig) -> Scenario:
    """Held-out split → long tail → label noise, on the training split `train`."""
    y = train.y.cpu().numpy()
    if len(y) and not 0 <= y.min() <= y.max() < num_classes:
        raise ValueError(f"labels span {y.min()}..{y.max()}, outside 0..{num_classes - 1}")
    rng = np.random.RandomState(cfg.seed)
    sizes = np.bincount(y, minlength=num_classes)
    counts = long_tail_counts(cfg, [int(n - k) for n, k in zip(sizes, heldout_taken(cfg, sizes.tolist()))], rng)
    pools, held = heldout_split(y, num_classes, cfg, rng)
    drawn = np.concatenate([p[:n] for p, n in zip(pools, counts)])  # class by class, as the labels are drawn
    t = transition_matrix(cfg.noise, cfg.noise_ratio, num_classes, rng) if cfg.noise else None
    noisy_drawn = resample_labels(y[drawn], t, rng) if t is not None else y[drawn]
    order = np.argsort(drawn, kind="stable")
    keep, noisy = drawn[order], noisy_drawn[order]
    clean = y[keep]

    dev = train.y.device

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(dev)

    held = {name: np.sort(idx) for name, idx in held.items()}
    keep_t = tensor(keep)
    flipped = noisy != clean
    per_class = [float(flipped[clean == c].mean()) if (clean == c).any() else None for c in range(num_classes)]

    def bincount(a: np.ndarray) -> list[int]:
        return np.bincount(a, minlength=num_classes).tolist()

    record = {
        "config": dataclasses.asdict(cfg),
        "seed": cfg.seed,
        "num_classes": num_classes,
        "source_size": len(y),
        "source_class_counts": bincount(y),
        "heldout_sizes": {name: len(idx) for name, idx in held.items()},
        "heldout_class_counts": {name: bincount(y[idx]) for name, idx in held.items()},
        "long_tail_counts": None if cfg.imbalance == 1 else [int(n) for n in counts],
        "train_size": len(keep),
        "train_class_counts": bincount(clean),  # by true label
        "train_label_counts": bincount(noisy),  # by the label trained on
        "noise": {
            "kind": cfg.noise, "ratio": cfg.noise_ratio,
            "transition_matrix": None if t is None else t.tolist(),
            "realised_rate": float(flipped.mean()) if len(flipped) else 0.0,
            "realised_rate_per_class": per_class,
        },
    }
    return Scenario(
        train=Split(train.x[keep_t], tensor(noisy)),
        heldout={name: train.subset(tensor(idx)) for name, idx in held.items()},
        clean_labels=tensor(clean), indices=keep_t,
        heldout_indices={name: tensor(idx) for name, idx in held.items()},
        record=record,
    )
