"""Shared fixtures: a small real model trained on real Fashion-MNIST, for tests that need a classifier
whose adversarial behaviour is meaningful (attacks, evaluation)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.data import load_dataset
from bench.models import build_model

TINY_TRAIN_N = 4000
TINY_TEST_N = 512
TINY_SEED = 0


@pytest.fixture(scope="session")
def trained_tiny_cnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(tiny-cnn in eval mode on CPU, x_test float [0,1] (512×1×28×28), y_test), trained for a few seconds
    on 4000 Fashion-MNIST training images with a fixed seed; the global RNG state is left as it was."""
    train, test = load_dataset("fmnist")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = build_model("tiny-cnn", 10, in_channels=1, image_size=28)
        train = train.subset(torch.arange(TINY_TRAIN_N))
        x, y = train.float_images(), train.y
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(4):
            for idx in torch.randperm(TINY_TRAIN_N).split(128):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                optimizer.step()
    model.eval().zero_grad(set_to_none=True)
    test = test.subset(torch.arange(TINY_TEST_N))
    return model, test.float_images(), test.y
