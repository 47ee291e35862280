"""UIAT's figures, drawn from the runs of its tables (same configs, so nothing is trained twice) and from the
extra evaluations they need, which are computed here from stored checkpoints and cached in the run folders.

Fig. 1 / 4: accuracy under PGD-20 of signed strength ε (negative ε: the inverse adversary, PGD-20 descending the
CE), separately for the test images in the upper and the lower half of the true-class probability on clean
inputs ("ranked by natural classification accuracy"). Fig. 5: AutoAttack accuracy of UIAT (one-off) minus TRADES
over ε. Fig. 2: learning curves of 200-epoch runs. Fig. 3 / 7: natural and AutoAttack accuracy over λ, β, γ, T, T′.
The sweeps' x values are not legible in the paper's text: ours are below [AMBIG]. Sweep images are spread evenly
over the test set (every k-th), so a test set stored class by class still gives every class.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from bench import atomic
from bench.attacks import pgd
from bench.data import Split, load_dataset
from bench.evaluate import AttackSpec, attack_hits
from bench.experiments.base import Figure, FigureInput, PlannedRun, register
from bench.experiments.plotting import footer, new_figure, save
from bench.checkpoints import Checkpoint
from bench.papers.uiat import tables as uiat
from bench.papers.uiat.tables import EPS_255, EPOCHS, helper_run, method_run, recipe
from bench.store import RunDir
from bench.training.assemble import Runtime, load_model, resolve_device

STRENGTHS_255 = (-8, -6, -4, -2, -1, 0, 1, 2, 4, 6, 8)  # signed PGD-20 strengths of Fig. 1 / 4
AA_STRENGTHS_255 = {"paper": (2, 4, 6, 8, 10, 12), "fast": (2, 4, 6, 8, 10, 12), "smoke": (4, 8)}
SWEEP_IMAGES = {"paper": None, "fast": 1000, "smoke": 64}  # test images of the PGD sweeps (None: all)
AA_SWEEP_IMAGES = {"paper": None, "fast": 1000, "smoke": 8}
LAMBDAS = (1.0, 2.0, 3.0, 3.5, 4.0, 5.0)
SENSITIVITY = {  # Fig. 7 panel → method, hyperparameter, values (T and T′ as fractions of training)
    "(a) β": ("uiat", "beta", (0.0, 0.5, 1.0, 2.0, 4.0)),
    "(b) γ": ("uiat", "gamma", (0.5, 0.7, 0.8, 0.9, 0.95)),
    "(c) T / epochs": ("uiat", "momentum_start", (0.25, 0.5, 0.6, 0.75, 0.9)),
    "(d) T′ / epochs": ("uiat_oneoff", "start_fraction", (0.2, 0.4, 0.6, 0.8, 0.9)),
}
HALVES = {"top": "top 50% (high natural confidence)", "bottom": "bottom 50% (low natural confidence)",
          "all": "all test images"}


# ---- extra evaluations of stored checkpoints, cached per run ---------------------------------------------------

def _last_model(run: RunDir, device: torch.device) -> tuple[nn.Module, Split]:
    cfg = run.config()
    model = load_model(cfg, run, Checkpoint("", cfg.epochs - 1), Runtime(device))
    _, test = load_dataset(cfg.dataset)
    return model, test


def _spread(test: Split, n: int | None) -> Split:
    """n test images taken at even strides (all of them for None)."""
    if n is None or n >= len(test):
        return test
    return test.subset(torch.linspace(0, len(test) - 1, n).round().long())


def _cached(run: RunDir, name: str, n: int | None, strengths: Sequence[int],
            compute: Callable[[list[int]], dict[int, Any]]) -> dict[int, Any]:
    """Per-strength results from the run's `uiat_<name>` file, computing (and adding) only the missing strengths."""
    path = run.extra(f"uiat_{name}")
    cache = json.loads(path.read_text()) if path.exists() else {}
    if cache.get("images", "unset") != n:
        cache = {"images": n, "checkpoint": "last", "by_strength_255": {}}
    todo = [s for s in strengths if str(s) not in cache["by_strength_255"]]
    if todo:
        cache["by_strength_255"].update({str(s): v for s, v in compute(todo).items()})
        atomic.write_json(path, cache)
    return {s: cache["by_strength_255"][str(s)] for s in strengths}


def _batches(test: Split, device: torch.device, size: int = 500):
    for start in range(0, len(test), size):
        yield test.x[start:start + size].to(device).float().div_(255), test.y[start:start + size].to(device)


def _signed_pgd_hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, strength: float,
                     generator: torch.Generator) -> torch.Tensor:
    adv = x if strength == 0 else pgd(model, x, y, eps=abs(strength), step_size=abs(strength) / 4, steps=20,
                                      init="uniform", descent=strength < 0, generator=generator)
    with torch.no_grad():
        return (model(adv).argmax(1) == y).cpu()


def accuracy_by_half(run: RunDir, profile: str, device: torch.device) -> dict[int, dict[str, float]]:
    """Strength (1/255) → accuracy of the upper / lower half of the clean true-class probability and of all."""
    def compute(strengths: list[int]) -> dict[int, dict[str, float]]:
        model, test = _last_model(run, device)
        test = _spread(test, SWEEP_IMAGES[profile])
        with torch.no_grad():
            confidence = torch.cat([model(x).softmax(1).gather(1, y[:, None])[:, 0].float().cpu()
                                    for x, y in _batches(test, device)])
        order = torch.argsort(confidence, descending=True, stable=True)
        halves = {"top": order[: len(order) // 2], "bottom": order[len(order) // 2:], "all": order}
        out = {}
        for strength in strengths:
            generator = torch.Generator(device).manual_seed(run.config().seed)
            hits = torch.cat([_signed_pgd_hits(model, x, y, strength / 255, generator)
                              for x, y in _batches(test, device)]).float()
            out[strength] = {half: float(hits[idx].mean()) for half, idx in halves.items()}
        return out
    return _cached(run, "pgd20_strength", SWEEP_IMAGES[profile], STRENGTHS_255, compute)


def aa_accuracy(run: RunDir, profile: str, device: torch.device) -> dict[int, float]:
    """Strength (1/255) → standard AutoAttack accuracy of the last checkpoint."""
    def compute(strengths: list[int]) -> dict[int, float]:
        model, test = _last_model(run, device)
        test = _spread(test, AA_SWEEP_IMAGES[profile])
        return {s: float(attack_hits(model, test.x, test.y, AttackSpec(f"aa{s}", "aa", eps=s / 255), batch_size=500,
                                     seed=run.config().seed, device=device).mean()) for s in strengths}
    return _cached(run, "aa_strength", AA_SWEEP_IMAGES[profile], AA_STRENGTHS_255[profile], compute)


# ---- reading finished runs -------------------------------------------------------------------------------------

def _first(inputs: FigureInput, key: str) -> RunDir | None:
    runs = inputs.runs.get(key, [])
    return runs[0] if runs else None


def _final(inputs: FigureInput, run: RunDir, attack: str) -> float:
    """Accuracy (%) of the last checkpoint under `attack`, from its stored evaluation (NaN if not evaluated)."""
    evaluated = inputs.evaluations(run).checkpoint("last")
    measured = None if evaluated is None else evaluated["attacks"].get(attack)
    return math.nan if measured is None else 100 * measured["acc"]


def _absent(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not run", ha="center", va="center", transform=ax.transAxes, color="0.4")


# ---- Fig. 1 and 4: accuracy vs attack strength, by natural-confidence half -------------------------------------

def _halves_panel(ax, run: RunDir | None, title: str, profile: str, annotate_gap: bool) -> None:
    ax.set(title=title, xlabel="ε (×1/255; negative = inverse adversary)", ylabel="accuracy (%)")
    if run is None:
        _absent(ax, title)
        return
    curve = accuracy_by_half(run, profile, resolve_device())
    for half, label in HALVES.items():
        ax.plot(STRENGTHS_255, [100 * curve[s][half] for s in STRENGTHS_255], marker="o", ms=3, label=label,
                color={"top": "C0", "bottom": "C3", "all": "C2"}[half])
    ax.axvline(0, color="0.6", lw=0.8)
    if annotate_gap:
        top, bottom = (100 * curve[EPS_255][h] for h in ("top", "bottom"))
        ax.annotate(f"gap {top - bottom:.1f} ", xy=(EPS_255, (top + bottom) / 2), ha="right", va="center", fontsize=8)
        ax.vlines(EPS_255, bottom, top, color="k", lw=1)
    ax.legend(fontsize=7)


def _draw_halves(inputs: FigureInput, path_stem: Path, panels: dict[str, str], annotate_gap: bool):
    fig, axes = new_figure(ncols=len(panels))
    for ax, (key, title) in zip(axes, panels.items()):
        _halves_panel(ax, _first(inputs, key), title, inputs.profile, annotate_gap)
    footer(fig, inputs)
    return save(fig, path_stem)


def plan_fig1(profile: str) -> list[PlannedRun]:
    return [helper_run(profile, "natural"), method_run(profile, "SAT", "SAT")]


FIG1 = register(Figure(
    id="fig1_uiat", paper="uiat",
    title="UIAT Fig. 1: PGD-20 accuracy vs signed ε by natural-confidence half, natural vs PGD-AT (CIFAR-10)",
    plan=plan_fig1,
    draw=lambda inputs, stem: _draw_halves(inputs, stem, {"natural": "(a) natural training",
                                                          "SAT": "(b) adversarial training (PGD-AT)"}, False),
    notes="Natural model = HAT's helper run, adversarial = Table 1's SAT run; last checkpoints. Halves by the "
          "true-class probability on clean images; PGD-20 with step |ε|/4, inverse side descends the CE."))


def plan_fig4(profile: str) -> list[PlannedRun]:
    return [method_run(profile, "TRADES", "TRADES"), method_run(profile, "UIAT", "UIAT")]


FIG4 = register(Figure(
    id="fig4_uiat", paper="uiat",
    title="UIAT Fig. 4: PGD-20 accuracy vs signed ε by natural-confidence half, TRADES vs UIAT (ResNet-18, CIFAR-10)",
    plan=plan_fig4,
    draw=lambda inputs, stem: _draw_halves(inputs, stem, {"TRADES": "(a) TRADES", "UIAT": "(b) UIAT"}, True),
    notes="Table 1's CIFAR-10 runs, last checkpoints; the gap between the halves is marked at ε = 8/255."))


# ---- Fig. 5: AutoAttack accuracy difference over ε ---------------------------------------------------------------

def plan_fig5(profile: str) -> list[PlannedRun]:
    return [method_run(profile, "UIAT (One-off)", "UIAT (One-off)"), method_run(profile, "TRADES", "TRADES")]


def draw_fig5(inputs: FigureInput, path_stem: Path):
    fig, (ax,) = new_figure()
    ax.set(title="AA accuracy: UIAT (one-off) − TRADES", xlabel="ε (×1/255)", ylabel="difference (points)")
    ours, trades = _first(inputs, "UIAT (One-off)"), _first(inputs, "TRADES")
    ax.axhline(0, color="red", lw=1)
    ax.axvline(EPS_255, color="red", lw=1, ls="--")
    if ours is None or trades is None:
        _absent(ax, "UIAT (one-off) or TRADES")
    else:
        device = resolve_device()
        a, b = aa_accuracy(ours, inputs.profile, device), aa_accuracy(trades, inputs.profile, device)
        strengths = list(a)
        ax.bar(strengths, [100 * (a[s] - b[s]) for s in strengths], width=1.2, color="C0")
    footer(fig, inputs)
    return save(fig, path_stem)


FIG5 = register(Figure(
    id="fig5_uiat", paper="uiat", title="UIAT Fig. 5: AA accuracy of UIAT (one-off) minus TRADES vs ε (CIFAR-10)",
    plan=plan_fig5, draw=draw_fig5,
    notes="Table 1's CIFAR-10 runs (trained at 8/255), last checkpoints, standard AutoAttack at each ε on the "
          "profile's number of test images."))


# ---- Fig. 2: learning curves -------------------------------------------------------------------------------------

CURVE_ROWS = {"SAT": "(a) PGD-AT", "UIAT (One-off)": "(b) UIAT (one-off)"}


def plan_fig2(profile: str) -> list[PlannedRun]:
    return [method_run(profile, row, row, length="curves") for row in CURVE_ROWS]


def draw_fig2(inputs: FigureInput, path_stem: Path):
    fig, axes = new_figure(ncols=2)
    for ax, (key, title) in zip(axes, CURVE_ROWS.items()):
        ax.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
        run = _first(inputs, key)
        if run is None:
            _absent(ax, title)
            continue
        records = run.records()
        epochs = [r["epoch"] + 1 for r in records]
        ax.plot(epochs, [100 * r["train_acc"] for r in records], marker=".", label="train, on its training adversaries")
        evaluated = [r for r in records if "eval" in r]
        for attack, label in (("clean", "test, natural"), ("pgd20", "test, PGD-20")):
            ax.plot([r["epoch"] + 1 for r in evaluated], [100 * r["eval"]["attacks"][attack]["acc"] for r in evaluated],
                    marker=".", label=label)
        ax.legend(fontsize=7)
    footer(fig, inputs)
    return save(fig, path_stem)


FIG2 = register(Figure(
    id="fig2_uiat", paper="uiat",
    title="UIAT Fig. 2: learning curves of PGD-AT and UIAT (one-off), 200 epochs, CIFAR-10",
    plan=plan_fig2, draw=draw_fig2,
    notes="UIAT's recipe (OneCycle) stretched to 200 epochs, as the paper only says it doubled the epochs. Test "
          "curves: the per-epoch evaluation on the first eval_n test images. The runs record no natural or PGD-20 "
          "accuracy on training images: the train curve is the accuracy on the adversaries each update trained on."))


# ---- Fig. 3 and 7: hyperparameter sensitivity ---------------------------------------------------------------------

def _sweep_key(name: str, value: float) -> str:
    return f"{name}={value:g}"


def _sweep_panel(ax, inputs: FigureInput, name: str, values: Sequence[float], title: str, xlabel: str) -> None:
    points = [(v, run) for v in values if (run := _first(inputs, _sweep_key(name, v))) is not None]
    ax.set(title=title, xlabel=xlabel, ylabel="natural accuracy (%)")
    if not points:
        _absent(ax, title)
        return
    robust_ax = ax.twinx()
    robust_ax.set_ylabel("AA accuracy (%)")
    xs = [v for v, _ in points]
    ax.plot(xs, [_final(inputs, run, "clean") for _, run in points], marker="o", color="C0", label="natural")
    robust_ax.plot(xs, [_final(inputs, run, "aa") for _, run in points], marker="s", color="C3", label="AA")
    ax.legend(handles=ax.get_lines() + robust_ax.get_lines(), fontsize=7)


def plan_fig3(profile: str) -> list[PlannedRun]:
    return [method_run(profile, _sweep_key("lam", lam), "UIAT (One-off)", hp={"lam": lam}) for lam in LAMBDAS]


def draw_fig3(inputs: FigureInput, path_stem: Path):
    fig, (ax,) = new_figure()
    _sweep_panel(ax, inputs, "lam", LAMBDAS, "UIAT (one-off)", "λ")
    footer(fig, inputs)
    return save(fig, path_stem)


FIG3 = register(Figure(
    id="fig3_uiat", paper="uiat", title="UIAT Fig. 3: natural and AA accuracy of UIAT (one-off) vs λ (CIFAR-10)",
    plan=plan_fig3, draw=draw_fig3, evaluation=uiat.evaluation, selection=uiat.selection,
    notes=f"λ ∈ {LAMBDAS} [AMBIG: the paper's values are not in its text]; λ = 3.5 is Table 1's run; "
          "last checkpoints."))


def plan_fig7(profile: str) -> list[PlannedRun]:
    return [PlannedRun(_sweep_key(name, v), recipe(profile, method, hp={name: v}))
            for method, name, values in SENSITIVITY.values() for v in values]


def draw_fig7(inputs: FigureInput, path_stem: Path):
    fig, axes = new_figure(ncols=2, nrows=2)
    for ax, (title, (_, name, values)) in zip(axes, SENSITIVITY.items()):
        _sweep_panel(ax, inputs, name, values, title, title.split(" ", 1)[1])
    footer(fig, inputs)
    return save(fig, path_stem)


FIG7 = register(Figure(
    id="fig7_uiat", paper="uiat",
    title="UIAT Fig. 7: natural and AA accuracy of UIAT vs β, γ, T and of UIAT (one-off) vs T′ (CIFAR-10)",
    plan=plan_fig7, draw=draw_fig7, evaluation=uiat.evaluation, selection=uiat.selection,
    notes="Values [AMBIG: not in the paper's text]: " + "; ".join(f"{n} ∈ {v}" for _, n, v in SENSITIVITY.values())
          + f". T, T′ as fractions of {EPOCHS['cifar']['paper']} epochs (paper); defaults are Table 1's runs."))
