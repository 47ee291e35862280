"""The small networks of GAIRAT/BiLAW: small-CNN (CIFAR) and the MNIST-scale tiny-CNN and FC1.

Flattened sizes follow from `image_size`, so the same classes serve 1×28×28 (F-)MNIST and 3×32×32.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from bench.models.normalize import Classifier
from bench.models.registry import register_model


def _small_cnn_block(in_planes: int, planes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, 3, 1, 1), nn.BatchNorm2d(planes), nn.ReLU(),
        nn.Conv2d(planes, planes, 3, 1, 1), nn.BatchNorm2d(planes), nn.ReLU(),
        nn.MaxPool2d(2),
    )


class SmallCNN(Classifier):
    """3 blocks [conv3×3-BN-ReLU ×2, max-pool 2] of width 64/128/196, then FC 256, ReLU, FC C."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(in_channels, mean, std)
        if image_size < 8:
            raise ValueError(f"small-cnn pools three times and needs image_size >= 8, got {image_size}")
        self.body = nn.Sequential(_small_cnn_block(in_channels, 64), _small_cnn_block(64, 128),
                                  _small_cnn_block(128, 196), nn.Flatten(),
                                  nn.Linear(196 * (image_size // 8) ** 2, 256), nn.ReLU())
        self.head = nn.Linear(256, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class TinyCNN(Classifier):
    """Wong & Kolter (2018): conv16 4×4 s2 p1, ReLU, conv32 4×4 s2 p1, ReLU, FC 100, ReLU, FC C."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(in_channels, mean, std)
        if image_size < 4:
            raise ValueError(f"tiny-cnn halves the input twice and needs image_size >= 4, got {image_size}")
        side = image_size // 4  # each 4×4/stride-2/pad-1 conv maps n → floor(n/2)
        self.body = nn.Sequential(nn.Conv2d(in_channels, 16, 4, 2, 1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(32 * side * side, 100), nn.ReLU())
        self.head = nn.Linear(100, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


class FC1(Classifier):
    """One hidden layer: flatten, FC 1024, ReLU, FC C."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(in_channels, mean, std)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, 1024), nn.ReLU())
        self.head = nn.Linear(1024, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)


register_model("small-cnn", SmallCNN, "small-CNN of GAIRAT/BiLAW: 3 conv-BN blocks (64/128/196), FC 256")
register_model("tiny-cnn", TinyCNN, "tiny-CNN of Wong & Kolter 2018 / BiLAW: 2 strided convs (16/32), FC 100")
register_model("fc1", FC1, "FC1 of BiLAW: one hidden layer of 1024 ReLU units")
