"""CAAT's Figs. 3–5, drawn from the training runs of its tables (plus one noisy-label run for Fig. 4).

Fig. 3: per-class share of adversaries and mean clean loss over training on standard CIFAR-10 (CAAT's epoch
records). Fig. 4: share of adversaries, and mean adversarial / anti-adversarial bounds, of clean and of
noisy-label samples over training under 20% uniform noise (CAAT's per-sample records split by the scenario's
true labels). Fig. 5: per-class natural and robust errors of every method on long-tailed CIFAR-10, imbalance
factors 10 and 100 (the last checkpoint's error triple). Each figure also plans the hot starts its runs
fine-tune (`runs`); it draws only the fine-tuned rows. Fig. 1 is computed in closed form (bench.theory).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from bench import atomic
from bench.data import DATASETS, MissingDatasetError, load_dataset
from bench.data.scenarios import build_scenario
from bench.experiments.base import Figure, FigureInput, PlannedRun, no_runs, register
from bench.papers.caat.tables import CHECKPOINT
from bench.papers.caat.runs import (CAAT_ROWS, CORRUPTED_ROWS, LONG_TAIL_10, LONG_TAIL_100, STANDARD, UNIFORM_20,
                                   evaluation, fine_tune, hot_start, key, planned, selection)
from bench.experiments.plotting import footer, new_figure, save
from bench.store import RunDir
from bench.theory import caat_linear

FIG4_ROW = "CAAT (Grad-Based)"  # sample-wise bounds: the variant the paper proposes for noisy labels


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.4")


def _class_names(run: RunDir) -> Sequence[str]:
    info = DATASETS.get(run.config().dataset)
    return info.class_names or [str(c) for c in range(info.num_classes)]


# -- Fig. 3 ---------------------------------------------------------------------------------------------------

def plan_fig3(profile: str) -> list[PlannedRun]:
    return planned(profile, STANDARD, CAAT_ROWS)


def draw_fig3(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    found = [(k, inputs.runs[k][0]) for k in (key(STANDARD, row) for row in CAAT_ROWS) if k in inputs.runs]
    fig, axes = new_figure(ncols=2, nrows=max(1, len(found)))
    if not found:
        for ax in axes:
            _message(ax, "no finished run")
    for row, (run_key, run) in enumerate(found):
        records = run.records()
        epochs = [r["epoch"] + 1 for r in records]
        for ax, field, label in ((axes[2 * row], "class_adv_ratio", "ratio of adversaries"),
                                 (axes[2 * row + 1], "class_clean_loss", "average clean loss")):
            for c, name in enumerate(_class_names(run)):
                ax.plot(epochs, [np.nan if r[field][c] is None else r[field][c] for r in records], marker=".",
                        label=name)
            ax.set(xlabel="epoch", ylabel=label, title=f"{run_key.split('/', 1)[1]}: {label} per class")
        axes[2 * row].legend(fontsize=6, ncol=2)
    footer(fig, inputs)
    return save(fig, stem)


# -- Fig. 4 ---------------------------------------------------------------------------------------------------

def plan_fig4(profile: str) -> list[PlannedRun]:
    method, hp = CAAT_ROWS[FIG4_ROW]
    start = hot_start(profile, UNIFORM_20)
    return [start, fine_tune(profile, UNIFORM_20, FIG4_ROW, method, (*hp, ("record_samples", "true")), start)]


def noisy_mask(run: RunDir) -> np.ndarray:
    """True where the run's training label differs from the true one (the scenario rebuilt from its config)."""
    cfg = run.config()
    train, _ = load_dataset(cfg.dataset)
    scenario = build_scenario(train, DATASETS.get(cfg.dataset).num_classes, cfg.scenario)
    mask = (scenario.train.y != scenario.clean_labels).numpy()
    return mask[:cfg.train_limit] if cfg.train_limit is not None else mask


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def group_series(run: RunDir, noisy: np.ndarray) -> dict:
    """Per epoch and group (clean / noisy labels): share of adversaries, mean bound of adversaries and of
    anti-adversaries (in units of 1/255)."""
    files = sorted(run.extra("caat_samples").glob("epoch_*.npz"))
    out: dict = {"epochs": [], **{g: {"adv_ratio": [], "adv_eps": [], "anti_eps": []} for g in ("clean", "noisy")}}
    for path in files:
        with np.load(path) as z:
            adversary, eps = z["adversary"], z["eps"] * 255
        out["epochs"].append(int(path.stem.split("_")[1]) + 1)
        for group, members in (("clean", ~noisy), ("noisy", noisy)):
            seen = members & (adversary >= 0)
            out[group]["adv_ratio"].append(_mean(adversary[seen] == 1))
            out[group]["adv_eps"].append(_mean(eps[seen & (adversary == 1)]))
            out[group]["anti_eps"].append(_mean(eps[seen & (adversary == 0)]))
    return out


def cached_group_series(run: RunDir) -> dict:
    path = run.extra("caat_fig4_series")
    if path.exists():
        return json.loads(path.read_text())
    series = group_series(run, noisy_mask(run))
    atomic.write_json(path, series)
    return series


def _nan(values: list) -> list[float]:
    return [math.nan if v is None else v for v in values]


def draw_fig4(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, (ratio_ax, bound_ax) = new_figure(ncols=2)
    runs = inputs.runs.get(key(UNIFORM_20, FIG4_ROW), [])
    try:
        series = cached_group_series(runs[0]) if runs else None
    except MissingDatasetError as missing:
        series, reason = None, f"true labels unavailable:\n{str(missing)[:80]}…"
    else:
        reason = "no finished run"
    if series is None:
        for ax in (ratio_ax, bound_ax):
            _message(ax, reason)
    else:
        epochs = series["epochs"]
        for group, style in (("clean", "-"), ("noisy", "--")):
            ratio_ax.plot(epochs, _nan(series[group]["adv_ratio"]), style, marker=".", label=f"{group} samples")
            for role, label in (("adv_eps", "adversarial"), ("anti_eps", "anti-adversarial")):
                bound_ax.plot(epochs, _nan(series[group][role]), style, marker=".", label=f"{label}, {group}")
        ratio_ax.set(xlabel="epoch", ylabel="ratio of adversaries", title="(a) adversaries: clean vs noisy labels")
        bound_ax.set(xlabel="epoch", ylabel="mean bound ε_i (×1/255)", title="(b) average perturbation bounds")
        ratio_ax.legend(fontsize=7)
        bound_ax.legend(fontsize=7)
    footer(fig, inputs)
    return save(fig, stem)


# -- Fig. 5 ---------------------------------------------------------------------------------------------------

def plan_fig5(profile: str) -> list[PlannedRun]:
    return planned(profile, LONG_TAIL_10, CORRUPTED_ROWS) + planned(profile, LONG_TAIL_100, CORRUPTED_ROWS)


def draw_fig5(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(ncols=2, nrows=2)
    panels = [(scenario, part) for scenario in (LONG_TAIL_10, LONG_TAIL_100) for part in ("nat", "rob")]
    for ax, (scenario, part) in zip(axes, panels):
        drawn = 0
        for row in CORRUPTED_ROWS:
            for run in inputs.runs.get(key(scenario, row), [])[:1]:
                evaluated = inputs.evaluations(run).checkpoint(CHECKPOINT)
                if evaluated is None or "error_triple" not in evaluated:
                    continue
                per_class = evaluated["error_triple"][part]["per_class"]
                ax.plot(range(len(per_class)), [100 * v for v in per_class], marker="o", markersize=3, label=row)
                drawn += 1
        name = {"nat": "natural", "rob": "robust"}[part]
        ax.set(xlabel="class (0 = head … 9 = tail)", ylabel=f"{name} error (%)", title=f"{scenario}: {name} error")
        if drawn:
            ax.legend(fontsize=6)
        else:
            _message(ax, "no finished run")
    footer(fig, inputs)
    return save(fig, stem)


FIG3 = register(Figure(
    id="fig3_caat", paper="caat",
    title="CAAT Fig. 3: per-class ratio of adversaries and average clean loss during training, CIFAR-10",
    plan=plan_fig3, draw=draw_fig3,
    notes="Table 1's two CAAT runs (the paper does not say which bound); the ratio counts samples with α ≥ 0.5 "
          "by training label, the loss is the epoch's mean clean CE per class"))

FIG4 = register(Figure(
    id="fig4_caat", paper="caat",
    title="CAAT Fig. 4: adversaries and bounds of clean vs noisy-label samples, CIFAR-10 with 20% uniform noise",
    plan=plan_fig4, draw=draw_fig4,
    notes="one extra CAAT (Grad-Based) run with per-sample records, fine-tuning a hot start trained on the same "
          "noisy set; noisy = training label ≠ true label, from the scenario rebuilt from the run's config (needs "
          "the data set once; cached in the run folder)"))

FIG5 = register(Figure(
    id="fig5_caat", paper="caat",
    title="CAAT Fig. 5: per-class natural and robust errors on long-tailed CIFAR-10, IF = 10 and 100",
    plan=plan_fig5, draw=draw_fig5, evaluation=evaluation, selection=selection,
    notes="IF = 10 reuses Table 3's runs; IF = 100 trains the same rows from a hot start on the IF = 100 set; "
          "last checkpoint, PGD-20"))

FIG1 = register(Figure(
    id="fig1_caat", paper="caat",
    title="CAAT Fig. 1: class-wise errors of the optimal robust linear classifier vs ρ, and its boundaries",
    plan=no_runs, draw=lambda inputs, stem: caat_linear.draw_fig1(stem),
    notes="computed in closed form (Theorem 1, Corollary 2), checked against Monte-Carlo in the tests"))
