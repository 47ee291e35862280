"""ResNet-18 with the CIFAR stem (3×3 conv, no max-pool), as in UIAT/MAIL/WMMR.

Global average pooling is adaptive: identical to avg-pool 4 on 32×32 inputs and usable on 64×64
Tiny-ImageNet without changing the head.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.normalize import Classifier
from bench.models.registry import register_model


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus (projected) shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))
                         if stride != 1 or in_planes != planes else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(Classifier):
    """Standard ResNet-18 (2 basic blocks per stage, widths 64-512)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__(in_channels, mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.head = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


register_model("resnet18", ResNet18,
               "ResNet-18, CIFAR stem (3x3 conv, no max-pool), adaptive avg-pool (UIAT/MAIL/WMMR)")
