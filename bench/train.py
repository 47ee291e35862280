"""One method-agnostic training loop with per-epoch checkpoints, records and exact resume.

The loop asks the method for a loss, steps the optimiser and schedule, keeps per-class training
accuracy on the examples the update used, evaluates every `eval_every` epochs, and writes an
atomic checkpoint after every epoch. Killing the process at any moment and calling `train_run`
again continues from the last finished epoch with the same RNG states, so the final weights equal
those of an uninterrupted run (on CPU; CUDA kernels are not bitwise deterministic).
"""
from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench import atomic, environment
from bench.checkpoint_io import load_checkpoint, save_checkpoint
from bench.divergence import check_finite
from bench.config import RunConfig
from bench.data import DATASETS, DatasetInfo, Split, load_dataset
from bench.data.batches import AugmentSpec, BatchStream
from bench.data.scenarios import build_scenario
from bench.evaluate import EvalConfig, attack_specs, evaluate
from bench.models import build_model
from bench.progress import EpochLog, progress
from bench.schedules import build_schedule, milestones
from bench.store import RunDir
from bench.tensorboard_log import TensorBoardLog
from methods import Batch, MethodContext, build_method, check_norm, required_heldout, resolved_hparams


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; not part of its identity."""

    device: torch.device = torch.device("cpu")
    data_root: str | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


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
    return model.to(memory_format=torch.channels_last) if rt.cuda else model


def _rng_state(data_gen: torch.Generator) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "data": data_gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], data_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    data_gen.set_state(state["data"])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class EpochMeter:
    """Per-epoch sums kept on the device, so the hot loop never waits for a host sync."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros(num_classes, device=device)
        self.seen = torch.zeros(num_classes, device=device)
        self.stats: dict[str, torch.Tensor] = {}
        self.batches = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor | None, y: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        self.batches += 1
        self.loss += loss.detach().float()
        if logits is not None:
            hit = (logits.detach().argmax(1) == y).float()
            self.correct.index_add_(0, y, hit)
            self.seen.index_add_(0, y, torch.ones_like(hit))
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0) + v.detach().float()

    def summary(self) -> dict[str, Any]:
        seen = self.seen.cpu()
        acc = (self.correct.cpu() / seen.clamp(min=1)).tolist()
        out = {
            "train_loss": float(self.loss) / max(self.batches, 1),
            "train_acc": float(self.correct.sum() / seen.sum().clamp(min=1)),
            "train_class_acc": [a if n > 0 else None for a, n in zip(acc, seen.tolist())],
        }
        out.update({f"train_{k}": float(v) / self.batches for k, v in self.stats.items()})
        return out


def evaluate_model(model: nn.Module, test: Split, info: DatasetInfo, names: tuple[str, ...], n: int | None,
                   aa_n: int | None, eps: float, step: float, rt: Runtime, seed: int, *, norm: str) -> dict[str, Any]:
    subset = test if n is None or n >= len(test) else test.subset(torch.arange(n))
    cfg = EvalConfig(attack_specs(names, eps=eps, step=step, dataset=info.name, norm=norm), aa_n=aa_n, seed=seed)
    return evaluate(model, subset, info.num_classes, cfg, rt.device)


def check_heldout(cfg: RunConfig) -> None:
    """Refuse a method that needs a clean held-out split (meta/validation set) when the scenario has none."""
    needed = required_heldout(cfg.method)
    if needed is not None and cfg.scenario.heldout is None:
        raise ValueError(f"method {cfg.method!r} needs a clean held-out split; add --heldout {needed} "
                         "(the CLI does this by default)")


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


def train_run(cfg: RunConfig, run: RunDir, rt: Runtime = Runtime()) -> dict[str, Any]:
    """Train (or resume, or skip if done) the run in `run`; returns its result.json content."""
    if run.status() == "done":
        return run.result()
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    eval_step = evaluation_step(cfg, step)
    check_heldout(cfg)
    check_norm(cfg.method, cfg.norm)  # before any data is loaded or any folder is made
    init = initial_weights(cfg, run)
    train_split, test_split = load_dataset(cfg.dataset, rt.data_root)
    scenario = build_scenario(train_split, info.num_classes, cfg.scenario)
    train = scenario.train if cfg.train_limit is None else scenario.train.subset(torch.arange(cfg.train_limit))
    train = train.to(rt.device)
    test = test_split.to(rt.device)
    run.path.mkdir(parents=True, exist_ok=True)
    if not run.config_file.exists():
        atomic.write_json(run.config_file, {
            "run_id": run.path.name,
            "config": cfg.to_dict(),
            "overrides": cfg.overrides(),
            "method_hparams": resolved_hparams(cfg.method, cfg.hp_dict),
            "resolved": {"eps": eps, "step_size": step, "milestones": list(milestones(cfg)),
                         "dataset_note": "cifar10-jpeg is CIFAR-10 re-encoded as JPEG (q75), not cifar10"
                         if cfg.dataset == "cifar10-jpeg" else None,
                         "init_from": None if init is None else init.source},
            "machine": machine(rt.device),
        })
        atomic.write_json(run.path / "scenario.json", scenario.record)

    _seed_everything(cfg.seed)
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
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    schedule = build_schedule(optimizer, cfg, len(stream))
    start, best = 0, {}  # per checkpoint series ("" = the trained model, else an averaged model's name)
    if (ckpt := run.resume_point(rt.device)) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["schedule"])
        method.load_state_dict(ckpt["method"])
        _set_rng_state(ckpt["rng"], data_gen)
        start, best = ckpt["epoch"] + 1, ckpt["best"]
    run.truncate_records(start)
    environment.record(run.path, rt.device)  # this attempt's commit, device, precision, threads
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if rt.cuda else contextlib.nullcontext())

    log = EpochLog(run.path.name, start, cfg.epochs)
    with run.heartbeat(), TensorBoardLog(run.path, start) as board:
        for epoch in progress(range(start, cfg.epochs), desc=run.path.name, total=cfg.epochs - start, leave=True):
            began = time.time()
            epoch_lr = optimizer.param_groups[0]["lr"]  # the lr this epoch starts at (the schedule steps per batch)
            meter = EpochMeter(info.num_classes, rt.device)
            method.on_epoch_start(model, epoch)
            model.train()
            for i, (x, y, idx) in enumerate(progress(stream.epoch(data_gen), desc=f"epoch {epoch + 1}", total=len(stream))):
                if rt.cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast:
                    out = method.loss(model, Batch(x, y, idx, epoch, i), optimizer)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                schedule.step()
                check_finite(out.loss, model, epoch, i)
                meter.add(out.loss, out.logits, y, out.stats)
            record = {"epoch": epoch, "lr": epoch_lr, "threads": torch.get_num_threads(), **meter.summary()}
            record.update(method.on_epoch_end(model, epoch, record["train_class_acc"]))
            record["train_seconds"] = time.time() - began
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                record["eval"] = evaluate_model(model, test, info, cfg.eval_attacks, cfg.eval_n, None, eps, eval_step,
                                                rt, cfg.seed, norm=cfg.norm)
                averaged = method.averaged_models()  # per-epoch series of EMA/FAWA models (CFA Fig. 4)
                if averaged:
                    record["eval_averaged"] = {name: evaluate_model(m, test, info, cfg.eval_attacks, cfg.eval_n, None,
                                                                    eps, eval_step, rt, cfg.seed, norm=cfg.norm)
                                               for name, m in averaged.items()}
                if epoch + 1 >= cfg.select_after * cfg.epochs:
                    candidates = {"": (model, record["eval"]),
                                  **{n: (m, record["eval_averaged"][n]) for n, m in averaged.items()}}
                    for name, (m, evaluation) in candidates.items():
                        score = selection_score(evaluation, cfg)
                        if score > best.get(name, {"score": -1.0})["score"]:
                            best[name] = {"epoch": epoch, "score": score}
                            save_checkpoint(best_path(run, name), {"model": m.state_dict(), "epoch": epoch,
                                                                     "rule": _rule(cfg)})
            run.append_record(record)
            board.log(record)
            log.epoch(record)
            run.save_last({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "method": method.state_dict(), "rng": _rng_state(data_gen), "epoch": epoch, "best": best,
            })
        result = final_evaluation(cfg, run, model, method, test, info, eps, eval_step, rt)
    run.mark_done()
    return result


def selection_score(evaluation: dict[str, Any], cfg: RunConfig) -> float:
    attack = evaluation["attacks"][cfg.select]
    return attack["acc"] + (attack["worst_class_acc"] if cfg.select_score == "acc+worst" else 0.0)


def best_path(run: RunDir, series: str):
    return run.best_ckpt if not series else run.path / f"best_{series}.pt"


def _rule(cfg: RunConfig) -> str:
    n = "all" if cfg.eval_n is None else f"first {cfg.eval_n}"
    score = "accuracy" if cfg.select_score == "acc" else "accuracy + worst-class accuracy"
    after = f" among epochs ≥ {cfg.select_after:g}·{cfg.epochs}" if cfg.select_after else ""
    return (f"highest {cfg.select} {score} on the {n} test images{after}, evaluated every {cfg.eval_every} "
            "epoch(s); ties keep the earlier epoch")


def _load(cfg: RunConfig, info: DatasetInfo, rt: Runtime, state: dict[str, Any]) -> nn.Module:
    model = make_model(cfg, info, rt)
    model.load_state_dict(state)
    return model


def final_evaluation(cfg: RunConfig, run: RunDir, model: nn.Module, method: Any, test: Split, info: DatasetInfo,
                     eps: float, step: float, rt: Runtime) -> dict[str, Any]:
    """Evaluate the last and the best checkpoints (and any averaged models) with the final attacks, whose
    step is `step` (recorded as the result's step_size)."""
    averaged = method.averaged_models()
    checkpoints: dict[str, nn.Module] = {"last": model, **{f"last_{k}": m for k, m in averaged.items()}}
    best = load_checkpoint(run.best_ckpt, rt.device)
    if best["epoch"] != cfg.epochs - 1:
        checkpoints["best"] = _load(cfg, info, rt, best["model"])
    best_averaged = {}
    for name in averaged:
        if best_path(run, name).exists():
            saved = load_checkpoint(best_path(run, name), rt.device)
            best_averaged[name] = {"epoch": saved["epoch"], "same_as_last": saved["epoch"] == cfg.epochs - 1}
            if saved["epoch"] != cfg.epochs - 1:
                checkpoints[f"best_{name}"] = _load(cfg, info, rt, saved["model"])
    result: dict[str, Any] = {
        "run_id": run.path.name, "dataset": cfg.dataset, "model": cfg.model, "method": cfg.method,
        "epochs": cfg.epochs, "seed": cfg.seed, "norm": cfg.norm, "eps": eps, "step_size": step,
        "best": {"epoch": best["epoch"], "rule": best["rule"], "same_as_last": "best" not in checkpoints,
                 "averaged": best_averaged},
        "attacks": list(cfg.final_attacks), "aa_n": cfg.aa_n, "checkpoints": {},
    }
    for name, m in checkpoints.items():
        result["checkpoints"][name] = evaluate_model(m, test, info, cfg.final_attacks, cfg.final_n, cfg.aa_n, eps, step,
                                                     rt, cfg.seed, norm=cfg.norm)
    if "best" not in checkpoints:
        result["checkpoints"]["best"] = result["checkpoints"]["last"]
    for name, info_best in best_averaged.items():
        if info_best["same_as_last"]:
            result["checkpoints"][f"best_{name}"] = result["checkpoints"][f"last_{name}"]
    atomic.write_json(run.result_file, result)
    return result
