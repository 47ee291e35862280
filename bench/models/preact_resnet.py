"""PreAct-ResNet-18 (He et al. 2016, identity mappings), the two variants the reference codes use.

Variant A (Wong/CFA/HAT/N-FGSM) ends with BN+ReLU before pooling; variant B (FRL/CAAT/GradAlign)
pools the last block's output directly (Rice et al. 2020's code). Global average pooling is adaptive, which equals the
reference avg-pool 4 on 32×32 inputs and also serves 64×64 Tiny-ImageNet (HAT's TI model).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.normalize import Classifier
from bench.models.registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv ×2; the 1×1 projection shortcut acts on the pre-activated input.

    `dropout` (between the two convs) is only used by wide ResNets, whose block is otherwise this one.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = dropout
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_planes, planes, 1, stride, bias=False)
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = F.dropout(F.relu(self.bn2(out)), self.dropout, self.training)
        out = self.conv2(out)
        return out + skip


class PreActResNet18(Classifier):
    """PreAct-ResNet-18; `final_bn` selects variant A (True) or B (False)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 final_bn: bool = True):
        super().__init__(in_channels, mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(PreActBlock(in_planes, planes, stride), PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512) if final_bn else None
        self.head = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


register_model("preact-resnet18", partial(PreActResNet18, final_bn=True),
               "PreAct-ResNet-18 variant A, final BN+ReLU before pooling (Wong/CFA/HAT/UIAT/N-FGSM)")
register_model("preact-resnet18-b", partial(PreActResNet18, final_bn=False),
               "PreAct-ResNet-18 variant B, no final BN+ReLU (FRL/CAAT/GradAlign)")
