"""Wide ResNets (Zagoruyko & Komodakis 2016) as written in the TRADES/FRL and GAIRAT (Madry) codes.

Both reference codes build the same network — 16-channel stem, three stages of pre-activation blocks
of width 16k/32k/64k (strides 1,2,2), BN+ReLU, global average pool, linear — and initialise conv
weights N(0, 2/(k²·out)), BN weight 1 / bias 0, linear bias 0. They differ only in how depth maps to
blocks per stage: TRADES uses (depth−4)/6 (WRN-34-10 → 5), Madry's code (depth−2)/6 (WRN-32-10 → 5),
so WRN-34-10 and WRN-32-10 are the same architecture under two names. TRADES's code also builds an
unused `sub_block1`; it never runs, so it is left out. The parameter names differ from TRADES's and
RobustBench's (block1.0 vs block1.layer.0, head vs fc, ...): bench/robustbench_interop.py translates
them, so checkpoints move both ways through RobustBench's own WideResNet with strict=True.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.normalize import Classifier
from bench.models.preact_resnet import PreActBlock
from bench.models.registry import register_model


class WideResNet(Classifier):
    """WRN-depth-width; `depth_offset` 4 (Zagoruyko/TRADES) or 2 (Madry/GAIRAT) sets blocks per stage."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 depth: int = 34, width: int = 10, dropout: float = 0.0, depth_offset: int = 4):
        super().__init__(in_channels, mean, std)
        if depth_offset not in (2, 4):
            raise ValueError(f"depth_offset must be 4 (TRADES) or 2 (Madry), got {depth_offset}")
        blocks, rest = divmod(depth - depth_offset, 6)
        if rest or blocks < 1 or width < 1:
            raise ValueError(f"invalid WRN-{depth}-{width}: depth − {depth_offset} must be a positive "
                             f"multiple of 6 and width >= 1")
        self.depth, self.width, self.dropout = depth, width, dropout
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        stages, in_planes = [], 16
        for planes, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
            stages.append(nn.Sequential(*(PreActBlock(in_planes if i == 0 else planes, planes,
                                                      stride if i == 0 else 1, dropout)
                                          for i in range(blocks))))
            in_planes = planes
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.head = nn.Linear(in_planes, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)


register_model("wrn-28-10", partial(WideResNet, depth=28, depth_offset=4),
               "WideResNet-28-10, TRADES/FRL layout, 4 blocks/stage (dropout option)")
register_model("wrn-34-10", partial(WideResNet, depth=34, depth_offset=4),
               "WideResNet-34-10, TRADES/FRL/MART layout, 5 blocks/stage")
register_model("wrn-32-10", partial(WideResNet, depth=32, depth_offset=2),
               "WideResNet-32-10 'Madry' (GAIRAT/FAT/BiLAW), 5 blocks/stage; same net as WRN-34-10")
