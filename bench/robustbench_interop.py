"""RobustBench 1.1.1 model definitions as the exchange format, both ways.

Export: a bench checkpoint's state_dict is renamed to the keys of RobustBench's own module for the same
network (`robustbench.model_zoo.architectures`) and loads into it with strict=True, computing the same
logits (tests/test_robustbench_interop.py). The bench's own key names stay as they are, so existing
checkpoints, `init_from` and figures keep working; only this boundary translates.
Import: a RobustBench-format file (a state_dict, or {'state_dict': ...}, 'module.'/'model.' prefixes as
RobustBench's `load_model` strips them) loads strict=True into RobustBench's module, which the bench's
attacks then evaluate (`python -m bench eval --weights FILE --arch NAME`).

RobustBench's WideResNet and PreActResNet take [0,1] images without a mean/std layer, expect 3×32×32
inputs (fixed pooling) and are the same function as the bench's models below:
  WideResNet-D-W (TRADES code, robustbench .../wide_resnet.py) = bench wrn-D-W; WRN-34-10 is also the
  bench's wrn-32-10 "Madry" (same blocks per stage). TRADES-lineage zoo files carry an unused
  `sub_block1`, detected from the file's keys.
  PreActResNet-18-V2 = PreActResNet(PreActBlockV2, [2,2,2,2], bn_before_fc=True), the network of the
  zoo's Rice2020OverfittingNetL2 without its mean/std: bench preact-resnet18 (shortcut on the
  pre-activated input, final BN+ReLU); -nobn drops the final BN: bench preact-resnet18-b.
  PreActResNet-18 = PreActResNet(PreActBlock, [2,2,2,2]) as the zoo builds Andriushchenko2020Understanding:
  its shortcut acts on the raw block input, which no bench model does, so it is import-only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.checkpoint_io import load_checkpoint
from bench.registry import Registry

SUB_BLOCK = "sub_block1."  # TRADES's never-run block, present in many zoo WideResNet files


def _robustbench() -> Any:
    """Import robustbench's architecture modules (its package import needs the `autoattack` alias)."""
    from bench.attacks.autoattack import install_robustbench_alias

    install_robustbench_alias()
    from robustbench.model_zoo.architectures import resnet, wide_resnet
    from robustbench import utils

    return resnet, wide_resnet, utils


def _wide_resnet(depth: int, width: int) -> Callable[..., nn.Module]:
    def build(num_classes: int, sub_block1: bool = False) -> nn.Module:
        return _robustbench()[1].WideResNet(depth=depth, widen_factor=width, num_classes=num_classes,
                                            sub_block1=sub_block1)
    return build


def _preact(block: str, final_bn: bool) -> Callable[..., nn.Module]:
    def build(num_classes: int) -> nn.Module:
        resnet = _robustbench()[0]
        return resnet.PreActResNet(getattr(resnet, block), [2, 2, 2, 2], num_classes=num_classes,
                                   bn_before_fc=final_bn)
    return build


WRN_RENAMES = ((r"^(block\d)\.(\d+)\.", r"\1.layer.\2."), (r"\.shortcut\.", ".convShortcut."),
               (r"^bn\.", "bn1."), (r"^head\.", "fc."))
PREACT_RENAMES = ((r"\.shortcut\.weight$", ".shortcut.0.weight"), (r"^head\.", "linear."))


@dataclass(frozen=True)
class RobustBenchArch:
    """A RobustBench architecture; `bench_models` compute the same function (export needs one)."""

    name: str
    build: Callable[..., nn.Module]  # (num_classes, **variant) → RobustBench's module
    bench_models: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()  # regex bench key → RobustBench key, applied in order
    key_variants: bool = False  # True: `sub_block1` keys in a file select WideResNet(sub_block1=True)

    def model(self, num_classes: int, keys: set[str] = frozenset()) -> nn.Module:
        variant = {"sub_block1": any(k.startswith(SUB_BLOCK) for k in keys)} if self.key_variants else {}
        return self.build(num_classes, **variant)

    def robustbench_key(self, bench_key: str) -> str:
        for pattern, replacement in self.renames:
            bench_key = re.sub(pattern, replacement, bench_key)
        return bench_key


RB_ARCHS: Registry[RobustBenchArch] = Registry("RobustBench architecture")
for _depth, _width, _bench in ((28, 10, ("wrn-28-10",)), (34, 10, ("wrn-34-10", "wrn-32-10")),
                               (34, 15, ()), (34, 20, ())):
    RB_ARCHS.register(f"WideResNet-{_depth}-{_width}")(RobustBenchArch(
        f"WideResNet-{_depth}-{_width}", _wide_resnet(_depth, _width), _bench, WRN_RENAMES, key_variants=True))
RB_ARCHS.register("PreActResNet-18-V2")(RobustBenchArch(
    "PreActResNet-18-V2", _preact("PreActBlockV2", True), ("preact-resnet18",), PREACT_RENAMES))
RB_ARCHS.register("PreActResNet-18-V2-nobn")(RobustBenchArch(
    "PreActResNet-18-V2-nobn", _preact("PreActBlockV2", False), ("preact-resnet18-b",), PREACT_RENAMES))
RB_ARCHS.register("PreActResNet-18")(RobustBenchArch("PreActResNet-18", _preact("PreActBlock", False)))


def arch_for_bench_model(model: str) -> RobustBenchArch:
    for name in RB_ARCHS:
        if model in RB_ARCHS.get(name).bench_models:
            return RB_ARCHS.get(name)
    exportable = sorted(m for n in RB_ARCHS for m in RB_ARCHS.get(n).bench_models)
    raise ValueError(f"model {model!r} has no RobustBench counterpart; exportable models: {', '.join(exportable)}")


def check_exportable(model: str, shape: tuple[int, ...], normalize: bool) -> RobustBenchArch:
    """The RobustBench architecture of a bench run, or a clear refusal of what RobustBench's module cannot hold."""
    arch = arch_for_bench_model(model)
    if tuple(shape) != (3, 32, 32):
        raise ValueError(f"RobustBench's {arch.name} takes 3×32×32 images (fixed pooling); this run's are "
                         f"{'×'.join(map(str, shape))}")
    if normalize:
        raise ValueError(f"this run was trained with a mean/std layer (--normalize); RobustBench's {arch.name} "
                         "takes [0,1] images without one, so its weights would compute another function")
    return arch


def to_robustbench(arch: RobustBenchArch, bench_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {arch.robustbench_key(k): v for k, v in bench_state.items()}


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A RobustBench-format file's state_dict, prefixes stripped as RobustBench's own loader does."""
    utils = _robustbench()[2]
    checkpoint = load_checkpoint(path, require_checksum=False)
    state = checkpoint["state_dict"] if "state_dict" in checkpoint else checkpoint
    return dict(utils.rm_substr_from_state_dict(utils.rm_substr_from_state_dict(state, "module."), "model."))


def load_robustbench(path: str | Path, arch_name: str, num_classes: int) -> nn.Module:
    """RobustBench's module of `arch_name` with the file's weights, loaded strict=True, in eval mode."""
    arch = RB_ARCHS.get(arch_name)
    state = read_state(path)
    model = arch.model(num_classes, set(state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:400]
        raise ValueError(f"{path} does not hold a RobustBench {arch_name} for {num_classes} classes "
                         f"(strict load: {detail})") from err
    return model.eval()
