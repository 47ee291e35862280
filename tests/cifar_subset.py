"""Tiny subsets of the real cifar10-jpeg for tests that need CIFAR-shaped data (skipped where it is absent)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def real_cifar10_jpeg() -> Path:
    """The cifar10-jpeg folder ($BENCH_CIFAR10_JPEG, else ../shared beside the repo), or skip the test."""
    import bench

    folder = Path(os.environ.get("BENCH_CIFAR10_JPEG") or Path(bench.__file__).parents[2] / "shared/data/cifar10-jpeg")
    if not (folder / "test.npz").is_file():
        pytest.skip(f"cifar10-jpeg not found in {folder}")
    return folder


def write_subset(source: Path, target: Path, per_class: int) -> None:
    """The first `per_class` JPEGs of every class, classes interleaved, in cifar10-jpeg's npz layout."""
    with np.load(source) as z:
        jpeg, offsets, labels, classes = z["jpeg"], z["offsets"], z["labels"], z["classes"]
    picked = np.stack([np.flatnonzero(labels == c)[:per_class] for c in range(len(classes))], axis=1).ravel()
    chunks = [jpeg[offsets[i]:offsets[i + 1]] for i in picked]
    np.savez(target, jpeg=np.concatenate(chunks), offsets=np.cumsum([0] + [len(c) for c in chunks]),
             labels=labels[picked], classes=classes)
