"""Synthetic label noise (Shu et al. 2019 / MW-Net): labels resampled once per sample from row y of a
transition matrix T (Shu et al. 2019, MW-Net)."""
from __future__ import annotations

import numpy as np

NOISE_KINDS = ("uniform", "flip1", "flip2", "pair")


def transition_matrix(kind: str, ratio: float, num_classes: int, rng: np.random.RandomState) -> np.ndarray:
    """T[i, j] = P(noisy label j | true label i).

    uniform: (1-r)I + (r/C)11ᵀ (the true label can be re-drawn: flip rate r(C-1)/C).
    flip1 / flip2: T_ii = 1-r and r (resp. r/2 each) on one (two distinct) random other class(es) per row,
    drawn from `rng` exactly as MW-Net's flip_labels_C / flip_labels_C_two do (without their reseeding).
    pair: the classic i → i+1 mod C (Han et al. 2018).
    """
    c = num_classes
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise={kind!r}; allowed: {', '.join(NOISE_KINDS)}")
    need = {"uniform": 1, "pair": 2, "flip1": 2, "flip2": 3}[kind]
    if c < need:
        raise ValueError(f"noise {kind!r} needs at least {need} classes, got {c}")
    if kind == "uniform":
        return (1 - ratio) * np.eye(c) + ratio / c * np.ones((c, c))
    t = (1 - ratio) * np.eye(c)
    rows = np.arange(c)
    if kind == "pair":
        t[rows, (rows + 1) % c] = ratio
        return t
    for i in rows:
        others = rows[rows != i]
        if kind == "flip1":
            t[i, rng.choice(others)] = ratio
        else:
            t[i, rng.choice(others, 2, replace=False)] = ratio / 2
    return t


def resample_labels(y: np.ndarray, t: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """New labels drawn from rows t[y]; the same draws as `rng.choice(C, p=t[y_i])` for i = 0, 1, … (MW-Net),
    vectorised: each such call takes one uniform u and returns the number of CDF entries ≤ u."""
    cdf = t.cumsum(axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random_sample(len(y))
    return np.minimum((cdf[y] <= u[:, None]).sum(axis=1), t.shape[1] - 1).astype(np.int64)
