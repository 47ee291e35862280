"""Accuracy metrics on predictions and labels: overall, per class, worst class, worst-k%, error triple.

Units: every function returns *fractions* in [0, 1]. The papers print percentages; `percent` is the
one conversion for display, so no stored number is ever ambiguous about its unit.

A class with no sample among the labels has an undefined accuracy: it is NaN (never 0, which would
read as "always wrong"), and the worst-class statistics skip it. Inputs are torch tensors or numpy
arrays; outputs are plain Python floats and lists, ready for JSON (after `json_safe`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray | Sequence[int]


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def predictions(pred_or_logits: ArrayLike) -> np.ndarray:
    """Class indices from either indices (shape N) or logits (shape N×C, argmax taken)."""
    values = _numpy(pred_or_logits)
    if values.ndim == 2:
        return values.argmax(axis=1)
    if values.ndim != 1:
        raise ValueError(f"predictions must have shape (N,) or logits (N, C); got shape {values.shape}")
    return values


def _labels(labels: ArrayLike, n: int, num_classes: int) -> np.ndarray:
    y = _numpy(labels)
    if y.shape != (n,):
        raise ValueError(f"labels have shape {y.shape}; expected ({n},) to match the predictions")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}; got range {y.min()}..{y.max()}")
    return y


def correct(pred_or_logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Per-sample boolean: the prediction equals the label."""
    pred = predictions(pred_or_logits)
    y = _numpy(labels)
    if y.shape != pred.shape:
        raise ValueError(f"labels have shape {y.shape}; expected {pred.shape} to match the predictions")
    return pred == y


def accuracy(pred_or_logits: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples classified correctly (over samples, not a mean over classes)."""
    hits = correct(pred_or_logits, labels)
    if hits.size == 0:
        raise ValueError("accuracy of an empty set of predictions is undefined")
    return float(hits.mean())


def per_class_from_correct(hits: ArrayLike, labels: ArrayLike, num_classes: int) -> list[float]:
    """acc_c = mean of `hits` over the samples of class c; NaN for a class absent from `labels`."""
    hits = _numpy(hits).astype(bool)
    y = _labels(labels, hits.shape[0], num_classes)
    counts = np.bincount(y, minlength=num_classes)
    right = np.bincount(y, weights=hits.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, right / np.maximum(counts, 1), np.nan)
    return [float(a) for a in acc]


def per_class_accuracy(pred_or_logits: ArrayLike, labels: ArrayLike, num_classes: int) -> list[float]:
    """Per-class accuracy (fractions), length `num_classes`; NaN where a class has no sample."""
    return per_class_from_correct(correct(pred_or_logits, labels), labels, num_classes)


def _present(per_class: Sequence[float]) -> np.ndarray:
    acc = np.asarray(per_class, dtype=np.float64)
    if acc.ndim != 1 or np.isnan(acc).all():
        raise ValueError("need a 1-D per-class list with at least one class present (non-NaN)")
    return acc


def worst_class(per_class: Sequence[float]) -> tuple[int, float]:
    """(class index, accuracy) of the lowest per-class accuracy; absent (NaN) classes are skipped.

    Ties go to the lowest class index.
    """
    acc = _present(per_class)
    index = int(np.nanargmin(acc))
    return index, float(acc[index])


def worst_k_count(num_present: int, fraction: float) -> int:
    """How many classes "the worst `fraction`" means: ceil(fraction · C), at least 1.

    Ceil (not round) so the set is never smaller than the stated share; for the papers' cases both
    agree (Tiny-ImageNet 0.2·200 = 40, CIFAR-10 0.2·10 = 2, CIFAR-100 0.2·100 = 20). The tiny
    tolerance keeps float products such as 0.1·30 = 3.0000000000000004 from rounding up.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must lie in (0, 1]")
    return max(1, math.ceil(fraction * num_present - 1e-9))


def worst_fraction_mean(per_class: Sequence[float], fraction: float = 0.2) -> float:
    """Mean of the lowest ceil(fraction · C) per-class accuracies (CFA Tiny-ImageNet "worst-20%").

    C counts the classes present (non-NaN); absent classes are left out of both the ranking and C.
    """
    acc = _present(per_class)
    acc = np.sort(acc[~np.isnan(acc)])
    return float(acc[: worst_k_count(acc.size, fraction)].mean())


def error_triple(clean_correct: ArrayLike, adv_correct: ArrayLike, labels: ArrayLike,
                 num_classes: int) -> dict[str, dict[str, Any]]:
    """FRL/CAAT natural, boundary and robust errors (fractions), FRL §3 and CAAT §4.1.

    Per class c: nat = 1 − acc_c, bdy = acc_c − advacc_c, rob = 1 − advacc_c. Boundary error is the
    difference of accuracies (as the reference codes compute it), not the per-sample
    "clean-correct and adversarially wrong" count, so nat + bdy = rob holds exactly.
    "avg" is the same quantity over all samples; "worst" is the maximum over present classes of
    each quantity *separately*, so worst rob ≠ worst nat + worst bdy in general.
    Returns {"nat"|"bdy"|"rob": {"avg": float, "worst": float, "worst_class": int, "per_class": list}}.
    """
    clean = _numpy(clean_correct).astype(bool)
    adv = _numpy(adv_correct).astype(bool)
    if clean.shape != adv.shape:
        raise ValueError(f"clean {clean.shape} and adversarial {adv.shape} results must cover the same samples")
    if clean.size == 0:
        raise ValueError("the error triple of an empty set of samples is undefined")
    acc = np.asarray(per_class_from_correct(clean, labels, num_classes))
    adv_acc = np.asarray(per_class_from_correct(adv, labels, num_classes))
    overall, adv_overall = float(clean.mean()), float(adv.mean())
    parts = {
        "nat": (1.0 - acc, 1.0 - overall),
        "bdy": (acc - adv_acc, overall - adv_overall),
        "rob": (1.0 - adv_acc, 1.0 - adv_overall),
    }
    out = {}
    for name, (per_class, avg) in parts.items():
        index = int(np.nanargmax(per_class))
        out[name] = {"avg": avg, "worst": float(per_class[index]), "worst_class": index,
                     "per_class": [float(v) for v in per_class]}
    return out


def percent(value: Any) -> Any:
    """Fractions → percent for display, through floats, lists and dicts; None and NaN pass as they are."""
    if isinstance(value, dict):
        return {k: percent(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [percent(v) for v in value]
    if isinstance(value, float):
        return 100.0 * value
    return value


def json_safe(value: Any) -> Any:
    """NaN → None through floats, lists and dicts, so `json.dumps` writes valid JSON (null, not NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
