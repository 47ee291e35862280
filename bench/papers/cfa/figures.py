"""CFA's Figures 2–7, drawn from the per-epoch records and final evaluations of CFA-recipe CIFAR-10 runs.

Every figure reuses the tables' settings (`cfa.run_config`), so a sweep point equal to a table row is the
same run. Robustness over epochs and in the sweeps (Figs. 5a, 7a: at the selected epoch) is PGD-10 (ε 8/255)
on the test images each epoch evaluates (all of them at the paper profile); sweeps are one seed (seed 0),
Fig. 6 (AutoAttack, best checkpoint) averages the seeds of Table 1. Windows given in epochs of the 200-epoch
schedule are taken at the same fractions of shorter runs. Captions did not survive text extraction; panels follow §3,
§4.3, §5.3 and App. C.2–C.3 of the paper.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from statistics import mean
from typing import Callable

import numpy as np

from bench.experiments.base import Figure, FigureInput, PlannedRun, no_runs, register
from bench.papers.cfa.tables import evaluation as cfa_evaluation
from bench.papers.cfa.tables import key, run_config, seeded_runs
from bench.papers.cfa.tables import selection as cfa_selection
from bench.experiments.plotting import footer, new_figure, save
from bench.selection import Best, monitored
from bench.store import RunDir
from bench.theory import cfa_toy
from methods.cfa.ccm import BASE_BUDGET
from methods.cfa.ccr import CCRHparams
from methods.standard.trades import TRADESHparams

ROBUST = "pgd10"
DATA = "CIFAR-10"
BEST_WINDOW, LAST_WINDOW = (100 / 200, 120 / 200), (180 / 200, 1.0)  # epochs 101–120 and 181–200 of 200
EPS_SWEEP = tuple(range(4, 12))  # training ε × 255; the values are lost from the text [AMBIG]
BETA_SWEEP = tuple(range(1, 9))  # TRADES β "from 1 to 8"
LAMBDA_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7)  # CCM λ₁ (Fig. 5), CCR λ₂ (Fig. 7)
EVAL_BUDGET_WHY = ("Fig. 2 evaluates every model at ε = 8/255, but the bench evaluates a run at its training "
                   "ε; needs an evaluation budget separate from the training one")


# -- reading runs ------------------------------------------------------------------------------------------------

def evaluations(run: RunDir, averaged: str | None = None) -> list[tuple[int, dict]]:
    """(epoch, evaluation) of each evaluated epoch, of the trained model or of an averaged model ('fawa')."""
    out = []
    for record in run.records():
        ev = monitored(record, "test", averaged or "")
        if ev:
            out.append((record["epoch"], ev))
    return out


def window(evals: list[tuple[int, dict]], epochs: int, span: tuple[float, float]) -> list[dict]:
    """The evaluations of the epochs in a fraction span of training (at least one epoch when it starts inside)."""
    lo = math.floor(span[0] * epochs)
    hi = max(lo + 1, math.floor(span[1] * epochs))
    return [ev for epoch, ev in evals if lo <= epoch < hi]


def mean_per_class(results: list[dict]) -> np.ndarray:
    """Per-class accuracy (%) of attack results averaged over runs or epochs; absent classes are NaN."""
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # a class never seen stays NaN
        return 100 * np.nanmean(np.array([r["per_class"] for r in results], dtype=float), axis=0)


def class_mean(evals: list[dict], attack: str) -> np.ndarray:
    return mean_per_class([ev["attacks"][attack] for ev in evals])


def checkpoint_results(inputs: FigureInput, runs: list[RunDir], checkpoint: str, attack: str) -> list[dict]:
    """The stored evaluation of one checkpoint under one attack, for each run that has it."""
    found = [inputs.evaluations(run).checkpoint(checkpoint) for run in runs]
    return [ev["attacks"][attack] for ev in found if ev is not None and attack in ev["attacks"]]


def label(run_key: str) -> str:
    return run_key.split("/", 1)[1]


def no_data(ax, what: str = "no finished run") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="0.4")


def finish(fig, inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    footer(fig, inputs)
    return save(fig, stem)


# -- Fig. 2: AT with different training ε -------------------------------------------------------------------------

def plan_fig2(profile: str) -> list[PlannedRun]:
    return [PlannedRun(f"{DATA}/AT ε={e}/255", run_config("AT", profile)) if e == 8 else
            PlannedRun(f"{DATA}/AT ε={e}/255", None, EVAL_BUDGET_WHY) for e in EPS_SWEEP]


def class_curves(axes, inputs: FigureInput, spans: list[tuple[float, float]], attack: str) -> None:
    """Per panel: one line per run key, the class-wise accuracy averaged over a span of epochs."""
    for ax, span in zip(axes, spans):
        for run_key, runs in inputs.runs.items():
            evals = window(evaluations(runs[0]), runs[0].config().epochs, span)
            if evals:
                ax.plot(class_mean(evals, attack), marker="o", ms=3, label=label(run_key))
        ax.set_xlabel("class")
        ax.set_xticks(range(10))
        if ax.lines:
            ax.legend(fontsize=6)
        else:
            no_data(ax)


def draw_fig2(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, (a, b, c) = new_figure(3)
    for run_key, runs in inputs.runs.items():
        evals = evaluations(runs[0])
        a.plot([e + 1 for e, _ in evals], [100 * ev["attacks"][ROBUST]["acc"] for _, ev in evals], marker=".",
               label=label(run_key))
    a.set(title="(a) overall PGD-10 robust accuracy", xlabel="epoch", ylabel="accuracy (%)")
    if a.lines:
        a.legend(fontsize=6)
    else:
        no_data(a)
    class_curves([b, c], inputs, [BEST_WINDOW, LAST_WINDOW], ROBUST)
    b.set(title="(b) class-wise robust, epochs 101–120 of 200", ylabel="accuracy (%)")
    c.set(title="(c) class-wise robust, epochs 181–200 of 200")
    return finish(fig, inputs, stem)


# -- Fig. 3: TRADES with different β ------------------------------------------------------------------------------

def plan_fig3(profile: str) -> list[PlannedRun]:
    default = TRADESHparams().beta
    return [PlannedRun(f"{DATA}/TRADES β={b}", run_config("TRADES", profile, hp=() if b == default
                                                             else (("beta", f"{b:g}"),))) for b in BETA_SWEEP]


def draw_fig3(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, (a, b) = new_figure(2)
    class_curves([a], inputs, [BEST_WINDOW], ROBUST)
    class_curves([b], inputs, [BEST_WINDOW], "clean")
    a.set(title="(a) class-wise robust (PGD-10), epochs 101–120 of 200", ylabel="accuracy (%)")
    b.set(title="(b) class-wise clean, epochs 101–120 of 200")
    return finish(fig, inputs, stem)


# -- Fig. 4: fluctuation of the worst class, trained model vs weight averages --------------------------------------

FIG4_MODELS = {"AT": None, "AT + FAWA": "fawa", "AT + EMA": "ema"}  # row → which model's series


def plan_fig4(profile: str) -> list[PlannedRun]:
    return [PlannedRun(key(DATA, row), run_config(row, profile)) for row in FIG4_MODELS]


def fluctuation(ax, evals: list[tuple[int, dict]]) -> None:
    """Overall and worst-class robust accuracy per epoch, and |Δ worst| between adjacent epochs as bars."""
    epochs = [e + 1 for e, _ in evals]
    overall = [100 * ev["attacks"][ROBUST]["acc"] for _, ev in evals]
    worst = [100 * ev["attacks"][ROBUST]["worst_class_acc"] for _, ev in evals]
    ax.plot(epochs, overall, marker=".", label="overall")
    ax.plot(epochs, worst, marker=".", label="worst class")
    ax.set(xlabel="epoch", ylabel="PGD-10 accuracy (%)")
    twin = ax.twinx()
    twin.bar(epochs[1:], np.abs(np.diff(worst)), color="tab:red", alpha=0.35, label="|Δ worst| (adjacent epochs)")
    twin.set_ylabel("|Δ worst class| (points)")
    twin.grid(False)
    lines = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=6, loc="lower right")


def draw_fig4(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(3)
    for ax, panel, (row, averaged) in zip(axes, "abc", FIG4_MODELS.items()):
        runs = inputs.runs.get(key(DATA, row))
        evals = evaluations(runs[0], averaged) if runs else []
        ax.set_title(f"({panel}) {row}" + (f": {averaged.upper()} model" if averaged else ": trained model"))
        if evals:
            fluctuation(ax, evals)
        else:
            no_data(ax, "no averaged model yet" if runs else "no finished run")
    return finish(fig, inputs, stem)


# -- Figs. 5 and 7: the base budget of CCM and of CCR ------------------------------------------------------------

def sweep_plan(base: str, row: str, hparam: str, default: float) -> Callable[[str], list[PlannedRun]]:
    def plan(profile: str) -> list[PlannedRun]:
        runs = [PlannedRun(key(DATA, base), run_config(base, profile))]
        for lam in LAMBDA_SWEEP:
            hp = () if lam == default else ((hparam, f"{lam:g}"),)
            runs.append(PlannedRun(f"{DATA}/{row} λ={lam:g}", run_config(row, profile, hp=hp)))
        return runs
    return plan


SWEEP_RULE = Best(attack=ROBUST, score="acc+worst", after=0.5)  # CFA's first stage, without AA on every point


def best_epoch_robustness(run: RunDir) -> dict | None:
    """PGD-10 result of the selected epoch (highest PGD-10 accuracy + worst-class accuracy in the second half),
    from that epoch's record: the sweeps' points are ranked without AutoAttack."""
    epoch = SWEEP_RULE.choose(run.records(), run.config().epochs)
    return next((ev["attacks"][ROBUST] for e, ev in evaluations(run) if e == epoch), None)


def sweep_bars(ax, inputs: FigureInput) -> None:
    """Average and worst-class PGD-10 accuracy of each sweep point's best epoch, mean over its seeds."""
    names, avg, worst = [], [], []
    for run_key, runs in inputs.runs.items():
        evs = [ev for ev in map(best_epoch_robustness, runs) if ev is not None]
        if evs:
            names.append(label(run_key))
            avg.append(100 * mean(ev["acc"] for ev in evs))
            worst.append(100 * mean(ev["worst_class_acc"] for ev in evs))
    if not names:
        no_data(ax)
        return
    x = np.arange(len(names))
    ax.bar(x - 0.2, avg, 0.4, label="average")
    ax.bar(x + 0.2, worst, 0.4, label="worst class")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("PGD-10 accuracy (%), best epoch")
    ax.legend(fontsize=6)


def class_schedule(ax, inputs: FigureInput, run_key: str, record_key: str, scale: float, reference: float) -> None:
    """A per-class training quantity recorded each epoch (ε_c, β_c), one line per class, the uniform value dashed."""
    runs = inputs.runs.get(run_key)
    records = [r for r in runs[0].records() if record_key in r] if runs else []
    if not records:
        no_data(ax)
        return
    values = scale * np.array([r[record_key] for r in records], dtype=float)
    epochs = [r["epoch"] + 1 for r in records]
    for c in range(values.shape[1]):
        ax.plot(epochs, values[:, c], marker=".", label=f"class {c}")
    ax.axhline(reference, color="k", ls="--", lw=1)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=6, ncol=2)


def draw_fig5(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, (a, b) = new_figure(2)
    sweep_bars(a, inputs)
    a.set_title("(a) AT vs AT + CCM with base budget λ₁")
    lam = BASE_BUDGET["pgd_at"]
    class_schedule(b, inputs, f"{DATA}/AT + CCM λ={lam:g}", "ccm.class_eps", 255, 8)
    b.set(title=f"(b) class-wise training ε (×1/255), λ₁ = {lam:g}", ylabel="ε_c × 255")
    return finish(fig, inputs, stem)


def draw_fig7(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, (a, b) = new_figure(2)
    sweep_bars(a, inputs)
    a.set_title("(a) TRADES vs TRADES + CCM + CCR with λ₂")
    lam, beta = CCRHparams().lam2, TRADESHparams().beta
    class_schedule(b, inputs, f"{DATA}/TRADES + CCM + CCR λ={lam:g}", "ccr.class_beta", 1, beta)
    b.set(title=f"(b) class-wise β_c, λ₂ = {lam:g}", ylabel="β_c")
    return finish(fig, inputs, stem)


# -- Fig. 6: class-wise AA robustness, EMA vs CFA ----------------------------------------------------------------

FIG6_BASES = ("AT", "TRADES", "FAT")
FIG6_MODELS = {"EMA": "best_ema", "CFA": "best_fawa"}


def plan_fig6(profile: str) -> list[PlannedRun]:
    return [run for base in FIG6_BASES for name in FIG6_MODELS
            for run in seeded_runs(DATA, f"{base} + {name}", profile)]


def draw_fig6(inputs: FigureInput, stem: Path) -> tuple[Path, Path]:
    fig, axes = new_figure(3)
    for ax, base in zip(axes, FIG6_BASES):
        for offset, (name, checkpoint) in zip((-0.2, 0.2), FIG6_MODELS.items()):
            evs = checkpoint_results(inputs, inputs.runs.get(key(DATA, f"{base} + {name}"), []), checkpoint, "aa")
            if evs:
                per_class = mean_per_class(evs)
                spread = np.nanstd(per_class / 100)
                ax.bar(np.arange(len(per_class)) + offset, per_class, 0.4,
                       label=f"{base} + {name} (std over classes {spread:.2f})")
        ax.set(title=f"{base}: AA accuracy per class, best checkpoint", xlabel="class", ylabel="accuracy (%)")
        ax.set_xticks(range(10))
        if ax.patches:
            ax.legend(fontsize=6)
        else:
            no_data(ax)
    return finish(fig, inputs, stem)


FIG2 = register(Figure(
    "fig2_cfa", "cfa", "CFA Fig. 2: AT with training ε from 4/255 to 11/255, overall and class-wise robustness",
    plan_fig2, draw_fig2, notes="only ε = 8/255 runs: the bench evaluates at the training ε (see why); the ε "
                                "values are lost from the text [AMBIG: 4–11/255]"))
FIG3 = register(Figure(
    "fig3_cfa", "cfa", "CFA Fig. 3: TRADES with β from 1 to 8, class-wise robust and clean accuracy",
    plan_fig3, draw_fig3, notes="the averaging window is lost from the text [AMBIG: epochs 101–120 as Fig. 2]"))
FIG4 = register(Figure(
    "fig4_cfa", "cfa", "CFA Fig. 4: worst-class fluctuation over epochs, AT vs its FAWA (and EMA) average",
    plan_fig4, draw_fig4, notes="(c) EMA is not in the paper's figure; it shows what FAWA's gate changes"))
FIG5 = register(Figure(
    "fig5_cfa", "cfa", "CFA Fig. 5: AT + CCM with base budget λ₁ from 0.3 to 0.7, and its class-wise ε",
    sweep_plan("AT", "AT + CCM", "ccm.lam1", BASE_BUDGET["pgd_at"]), draw_fig5))
FIG6 = register(Figure(
    "fig6_cfa", "cfa", "CFA Fig. 6: class-wise AA robustness, +EMA vs +CFA (AT, TRADES, FAT)",
    plan_fig6, draw_fig6, notes="the paper shows one base [AMBIG]; all three are drawn",
    evaluation=cfa_evaluation, selection=cfa_selection))
FIG7 = register(Figure(
    "fig7_cfa", "cfa", "CFA Fig. 7: TRADES + CCM + CCR with λ₂ from 0.3 to 0.7, and its class-wise β",
    sweep_plan("TRADES", "TRADES + CCM + CCR", "ccr.lam2", CCRHparams().lam2), draw_fig7))

FIG1 = register(Figure(
    id="fig1_cfa", paper="cfa",
    title="CFA Fig. 1: class-wise clean and robust accuracy on the toy distribution",
    plan=no_runs, draw=lambda inputs, stem: cfa_toy.draw_fig1(stem),
    notes="computed in closed form (App. A), checked against Monte-Carlo in the tests"))
