"""Smoke runs that evaluate in seconds: training and evaluation see only the first test images."""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytest
import torch

import bench.eval_store as eval_store
import bench.training.assemble as training
from bench.data import load_dataset


@contextlib.contextmanager
def short_test_set(images: int) -> Iterator[None]:
    """Inside the block, every dataset the training loop and the evaluations load keeps its first `images`
    test images (the training set is untouched)."""
    def short(name, root=None):
        train, test = load_dataset(name, root)
        return train, test.subset(torch.arange(images))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "load_dataset", short)
        patch.setattr(eval_store, "load_dataset", short)
        yield
