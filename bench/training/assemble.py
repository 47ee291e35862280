"""From a run config to the parts of a training: runtime, budget, data, model, method, optimiser, schedule.

Evaluation and figures build models here (`make_model`, `load_model`) without importing the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.checkpoint_io import load_checkpoint
from bench.checkpoints import Checkpoint, CheckpointStore
from bench.compile_option import check_compilable, compile_for_training
from bench.config import RunConfig
from bench.data import DATASETS, DatasetInfo, Split, load_dataset
from bench.data.batches import AugmentSpec, BatchStream
from bench.data.scenarios import Scenario, build_scenario
from bench.models import build_model
from bench.precision import PRECISIONS
from bench.schedules import build_schedule
from bench.store import RunDir
from methods import MethodContext, build_method, required_heldout


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; not part of its identity. Like the device and the thread count, these
    choices change the rounding of float sums, not the arithmetic asked for, and each training attempt records
    them (bench.environment). `compile`: the model's forward under torch.compile (bench.compile_option); its
    fused kernels round differently, so a compiled run agrees with the eager one closely, not bitwise."""

    device: torch.device = torch.device("cpu")
    data_root: str | None = None
    compile: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def channels_last(self) -> bool:
        """NHWC layout of the model and the training batches on CUDA, where convolutions on tensor cores are
        faster in it; on CPU NCHW (a layout, not a precision: the same arithmetic in another memory order)."""
        return self.cuda


def resolve_device(name: str = "auto") -> torch.device:
    """--device: auto (cuda if available), cpu, cuda or cuda:N; a GPU that is not there is refused up front."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (count == 0 or (device.index or 0) >= count):
        raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s) visible to torch; use --device cpu "
                         "(or auto)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: the bench runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    return device


def machine(device: torch.device) -> dict[str, Any]:
    """What a run's numbers depend on beyond its config: the thread count changes the order of CPU float sums
    (so the last digits of every metric), the device and torch version change the kernels."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": str(device), "device_name": name, "threads": torch.get_num_threads(), "torch": torch.__version__}


def attack_budget(cfg: RunConfig, info: DatasetInfo) -> tuple[float, float]:
    """(ε, step). The datasets' defaults are L∞ ones, so an ℓ2 run gives ε (RunConfig checks) and its step
    defaults to ε/4, the ratio of every dataset's L∞ default and of BiLAW's recipe."""
    eps = info.default_eps if cfg.eps is None else cfg.eps
    if cfg.step_size is not None:
        return eps, cfg.step_size
    return eps, info.default_step if cfg.norm == "linf" else eps / 4


def evaluation_step(cfg: RunConfig, step: float) -> float:
    """The evaluation attacks' step: the training `step` unless the experiment gives its own (UIAT §4.2)."""
    return step if cfg.eval_step_size is None else cfg.eval_step_size


def make_model(cfg: RunConfig, info: DatasetInfo, rt: Runtime) -> nn.Module:
    c, h, _ = info.shape
    norm = dict(mean=info.mean, std=info.std) if cfg.normalize else {}
    model = build_model(cfg.model, info.num_classes, in_channels=c, image_size=h, **norm).to(rt.device)
    model = PRECISIONS[cfg.precision].prepare(model)
    return model.to(memory_format=torch.channels_last) if rt.channels_last else model


def load_model(cfg: RunConfig, run: RunDir, ckpt: Checkpoint, rt: Runtime) -> nn.Module:
    """The network of a kept checkpoint of `run` (bench.checkpoints), in eval mode."""
    model = make_model(cfg, DATASETS.get(cfg.dataset), rt)
    model.load_state_dict(CheckpointStore(run.checkpoints_dir).load(ckpt, rt.device))
    return model.eval()


def check_heldout(cfg: RunConfig) -> None:
    """Refuse a method that needs a clean held-out split (meta/validation set) when the scenario has none."""
    needed = required_heldout(cfg.method)
    if needed is not None and cfg.scenario.heldout is None:
        raise ValueError(f"method {cfg.method!r} needs a clean held-out split; add --heldout {needed} "
                         "(the CLI does this by default)")


def check_monitor_on(cfg: RunConfig, scenario: Scenario) -> None:
    """Every monitored set is "test" or a held-out split the scenario carved (before any folder is made)."""
    have = ("test", *scenario.heldout)
    unknown = [name for name in cfg.monitor_on if name not in have]
    if unknown or not cfg.monitor_on:
        raise ValueError(f"monitor_on={list(cfg.monitor_on)}: this run's sets are {list(have)} (held-out splits "
                         f"come from --heldout; now {cfg.scenario.heldout})")


@dataclass(frozen=True)
class InitWeights:
    """The weights a run starts from (`init_from`), and where they came from for config.json."""

    state: dict[str, torch.Tensor]
    source: dict[str, Any]  # run id, file and (0-based) epoch of the source's last.pt


def _architecture(cfg: RunConfig) -> str:
    info = DATASETS.get(cfg.dataset)
    layer = "with" if cfg.normalize else "without"
    return (f"{cfg.model} ({layer} a mean/std layer) for {info.num_classes} classes of "
            f"{'×'.join(map(str, info.shape))} images")


def initial_weights(cfg: RunConfig, run: RunDir) -> InitWeights | None:
    """The final weights of the finished run `cfg.init_from` (same run store), when the run starts fresh;
    None without init_from or when resuming, since the run's own last.pt then holds its weights."""
    if cfg.init_from is None or run.last_ckpt.exists():
        return None
    source = RunDir(run.path.parent / cfg.init_from)
    if not source.config_file.exists():
        raise FileNotFoundError(
            f"init_from run {cfg.init_from} is not in the run store {run.path.parent}; train it first: "
            "`python -m bench train ...` with its settings, or `python -m bench run <table>`, which plans a "
            "table's hot starts and trains them before the runs that read them")
    state = source.status()
    if state != "done":
        raise ValueError(f"init_from run {cfg.init_from} is {state}, not finished: finish it first "
                         "(`python -m bench status` shows it; training it again resumes it)")
    wanted, found = _architecture(cfg), _architecture(source.config())
    if wanted != found:
        raise ValueError(f"init_from run {cfg.init_from} holds a {found}; this run trains a {wanted}")
    ckpt = load_checkpoint(source.last_ckpt)
    return InitWeights(ckpt["model"], {"run": cfg.init_from, "file": str(source.last_ckpt), "epoch": ckpt["epoch"]})


@dataclass
class Parts:
    """Everything the loop (bench.training.fit) works with, built fresh for each attempt."""

    info: DatasetInfo
    eps: float
    step: float
    eval_step: float
    scenario: Scenario
    train: Split
    test: Split
    stream: BatchStream
    data_gen: torch.Generator
    model: nn.Module
    method: Any
    optimizer: torch.optim.Optimizer
    schedule: Any
    init: InitWeights | None


def load_data(cfg: RunConfig, rt: Runtime) -> tuple[Scenario, Split, Split]:
    """(scenario, training split, test split), on the runtime's device; checks the monitored sets."""
    info = DATASETS.get(cfg.dataset)
    train_split, test_split = load_dataset(cfg.dataset, rt.data_root)
    scenario = build_scenario(train_split, info.num_classes, cfg.scenario)
    check_monitor_on(cfg, scenario)
    train = scenario.train if cfg.train_limit is None else scenario.train.subset(torch.arange(cfg.train_limit))
    return scenario, train.to(rt.device), test_split.to(rt.device)


def assemble(cfg: RunConfig, run: RunDir, rt: Runtime, seed_everything: Any) -> Parts:
    """Data, model, method, optimiser and schedule of a run, in the order that fixes their random draws:
    `seed_everything(cfg.seed)` is called after the data and before the model is built."""
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    init = initial_weights(cfg, run)
    scenario, train, test = load_data(cfg, rt)
    seed_everything(cfg.seed)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    augment = AugmentSpec.for_dataset(info) if cfg.augment else None
    stream = BatchStream(train, cfg.batch_size, rt.device, augment, shuffle=True, drop_last=False)
    model = make_model(cfg, info, rt)
    if init is not None:
        model.load_state_dict(init.state)
    ctx = MethodContext(
        num_classes=info.num_classes, eps=eps, step_size=step, attack_steps=cfg.attack_steps,
        epochs=cfg.epochs, steps_per_epoch=len(stream),
        class_counts=tuple(int(c) for c in torch.bincount(train.y, minlength=info.num_classes).tolist()),
        heldout={k: v.to(rt.device) for k, v in scenario.heldout.items()},
        device=rt.device, fidelity=cfg.fidelity, new_model=lambda: make_model(cfg, info, rt), run_dir=str(run.path),
        image_shape=tuple(info.shape), batch_size=cfg.batch_size, seed=cfg.seed, norm=cfg.norm,
    )
    method = build_method(cfg.method, cfg.hp_dict, ctx)
    if rt.compile:
        check_compilable(cfg.method, method)
        compile_for_training(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    schedule = build_schedule(optimizer, cfg, len(stream))
    return Parts(info, eps, step, evaluation_step(cfg, step), scenario, train, test, stream, data_gen, model, method,
                 optimizer, schedule, init)
