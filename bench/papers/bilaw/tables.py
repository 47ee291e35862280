"""BiLAW's tables (BiLAW §3–5 and Tables 1–3, 6–8; GAIRAT, WMMR and MAIL as its baselines); its weight figures are in `figures`.

* Table 1: MNIST / F-MNIST, Tiny-CNN and FC1, ℓ∞ ε = 0.1 and ℓ2 ε = 0.3: plain, AT, GAIRAT, WMMR, MAIL, BiLAW.
* Table 2: CIFAR-10, Small-CNN and WRN-32-10, ε = 0.0078 and 0.031: AT, TRADES, GAIRAT, WMMR, MAIL and the
  three BiLAW variants (non-parametric, BiLAW, BiLAW-TRADES).
* Table 3: CIFAR-100, WRN-32-10, ε = 0.031.
* Tables 6–8 (App. A.3): ablations of BiLAW-TRADES on CIFAR-10, WRN-32-10, ε = 0.031 — hidden units of ω_μ,
  1/λ, and the input of ω_μ. Their reference rows are Table 2's BiLAW-TRADES run (same numbers, 86.1 / 58.9).

Recipe [P]: 100 epochs, SGD lr 0.1 ÷10 at 30 and 60, momentum 0.9, batch 128, wd 2e-4 [AMBIG], PGD-10 with
step ε/4 for training, PGD-20 (step ε/4) for testing, AutoAttack on the first 1000 test images for CIFAR.
Table 1's ℓ2 columns use the same recipe in the ℓ2 ball (`norm="l2"`, ε = 0.3): PGD steps along the
ℓ2-normalised gradient with step ε/4 = 0.075 (the paper's "radius divided by 4" for every attack; the ℓ2 step
rule itself is unstated [AMBIG]), uniform starts in the ℓ2 ball, and standard AutoAttack with norm "L2".
Checkpoint: BiLAW stops early on its validation set #2 (§4.1: two validation sets of 1000 carved from the training
set, "one to learn the auxiliary network, the second for early stopping"), so its rows monitor `val_stop` and
select the highest PGD-20 accuracy there; the paper gives no rule for its baselines, which train on the full
training set: they keep the common early-stopping rule (Rice et al. 2020), highest PGD-20 accuracy on the first
1000 test images [AMBIG], which the tables' headers name as selection on test data. One seed.

Quick profile, Table 1 (the README's first job): only the F-MNIST Tiny-CNN ℓ∞ plain, AT and BiLAW cells, 3 epochs
(lr drop at 2) on the first 10 000 training images, clean and PGD-20 on the first 2000 test images, AA on the first
200: a few minutes on 2 CPU cores.
Fast profile, Table 1: sized to fit the F-MNIST rows in about an hour on a 2-core CPU (the issue's budget): 5 epochs
(lr drops at 2 and 3) on the first 20 000 training images, AA on the first 300 test images, clean and PGD-20 on all
10 000. CIFAR tables: the same grid at 10 of 100 epochs (lr drops at 3 and 6), AA on the first 1000 test images.
GPU time by bench/cost.py (counted FLOPs at 30 TFLOP/s effective, ±2×; `bench run <id> --profile paper --dry-run`
prints it): Table 2 ≈ 550 H100-h, all but 11 of them in the 16 WRN-32-10 runs — a WRN-32-10 forward is 13.3
GFLOPs (12× a PreAct-ResNet-18), so one PGD-AT epoch (11 passes per image) is ≈ 12 min by the model and a
100-epoch run ≈ 20 h, and the BiLAW variants cost 1.8–2.2× a PGD-AT step. Table 3 ≈ 200 H100-h (7 WRN runs);
Tables 6–8 ≈ 230 H100-h each (4 BiLAW-TRADES WRN runs, one of them Table 2's reference). So only Table 2's
Small-CNN columns fit a GPU-day. AutoAttack runs at the one checkpoint a row's cells read.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from bench.config import RunConfig
from bench.eval_store import Evaluation
from bench.experiments.base import Cell, Experiment, PlannedRun, register
from bench.selection import Best, Last, Rule
from methods import required_heldout

Hp = tuple[tuple[str, str], ...]

# ---------------------------------------------------------------------------------------------- shared


def _config(method: str, hp: Hp, dataset: str, model: str, eps: float, settings: dict[str, Any],
            norm: str = "linf") -> RunConfig:
    """BiLAW's recipe for one run; `settings` (the profile's) may replace the model (smoke: tiny-cnn)."""
    cfg = RunConfig(**{**dict(method=method, hp=hp, dataset=dataset, model=model, lr=0.1, momentum=0.9,
                              weight_decay=2e-4, batch_size=128, norm=norm, eps=eps, step_size=eps / 4), **settings})
    heldout = required_heldout(method)  # BiLAW's validation sets, carved out of its own training set
    if heldout is None:
        return cfg
    return dataclasses.replace(cfg, scenario=dataclasses.replace(cfg.scenario, heldout=heldout),
                               monitor_on=(STOP_SET,))


STOP_SET = "val_stop"  # BiLAW's validation set #2 (§4.1), the one it early-stops on
BILAW_RULE = Best(attack="pgd20", on=STOP_SET)
BASELINE_RULE = Best(attack="pgd20", on="test")  # the paper gives none for its baselines [AMBIG]


def selection(run: PlannedRun) -> Rule:
    """BiLAW rows: early stopping on val_stop (§4.1); plain training: the last epoch (nothing robust to select
    on); the other baselines: best PGD-20 on the monitored test images [AMBIG]."""
    if STOP_SET in run.config.monitor_on:
        return BILAW_RULE
    return Last() if run.config.method == "natural" else BASELINE_RULE


def checkpoint_read(method: str) -> str:
    """The checkpoint a row's cells read: plain training its last, every other row its selected best."""
    return "last" if method == "natural" else "best"


def evaluation_of(settings: dict[str, dict[str, Any]], attacks: tuple[str, ...] = ("clean", "pgd20", "aa")):
    """(profile, run) → the evaluation: clean, PGD-20 and AutoAttack with the profile's subsets, at the one
    checkpoint the row's cells read (AutoAttack on the full F-MNIST test set is about an hour per checkpoint
    on a CPU core: evaluating a checkpoint no cell reads would double that)."""
    def evaluation(profile: str, run: PlannedRun) -> Evaluation:
        return Evaluation(attacks, checkpoints=(checkpoint_read(run.config.method),), **settings[profile])
    return evaluation


METRICS = {"Clean": "clean", "PGD": "pgd20", "AA": "aa"}

# ---------------------------------------------------------------------------------------------- Table 1

DATASETS = {"MNIST": "mnist", "F-MNIST": "fmnist"}
MODELS = {"Tiny-CNN": "tiny-cnn", "FC1": "fc1"}
METHODS = {  # row label → (method, hyperparameter overrides)
    "plain": ("natural", ()),
    "AT": ("pgd_at", ()),
    "GAIRAT": ("gairat", ()),
    "WMMR": ("wmmr", ()),
    "MAIL": ("mail_at", (("bias", "0.05"), ("slope", "5"))),
    "BiLAW(ours)": ("bilaw", ()),
}
THREATS = {"linf": ("ℓ∞", 0.1), "l2": ("ℓ2", 0.3)}  # norm → (printed name, ε)

PROFILE_SETTINGS = {
    "paper": dict(epochs=100, milestones=(30, 60), eval_n=1000),
    "fast": dict(epochs=5, milestones=(2, 3), train_limit=20_000, eval_n=1000),
    "quick": dict(epochs=3, milestones=(2,), train_limit=10_000, eval_n=500),
    "smoke": dict(epochs=1, milestones=(), train_limit=256, attack_steps=2, eval_n=64,
                  eval_attacks=("clean", "pgd20")),
}
EVALUATION = {  # the evaluation subsets per profile: n (clean, PGD-20), aa_n (AutoAttack)
    "paper": dict(n=None, aa_n=None), "fast": dict(n=None, aa_n=300), "quick": dict(n=2000, aa_n=200),
    "smoke": dict(n=512, aa_n=16),
}


def _key(dataset: str, model: str, threat: str, row: str) -> str:
    return f"{dataset}/{model}/{threat}/{row}"


def _plan_all(profile: str) -> list[PlannedRun]:
    settings = PROFILE_SETTINGS[profile]
    runs = []
    for data_label, dataset in DATASETS.items():
        for model_label, model in MODELS.items():
            for threat, (_, eps) in THREATS.items():
                for row, (method, hp) in METHODS.items():
                    cfg = _config(method, hp, dataset, model, eps, settings, norm=threat)
                    runs.append(PlannedRun(_key(data_label, model_label, threat, row), cfg))
    return runs


# The `quick` profile is the README's first job: three rows of one column group, enough to see adversarial
# training buy the robustness plain training lacks, in a few minutes on 2 CPU cores.
QUICK_KEYS = tuple(_key("F-MNIST", "Tiny-CNN", "linf", row) for row in ("plain", "AT", "BiLAW(ours)"))


def plan_table1(profile: str) -> list[PlannedRun]:
    runs = _plan_all(profile)
    return [run for run in runs if run.key in QUICK_KEYS] if profile == "quick" else runs


def cells_table1() -> list[Cell]:
    cells = []
    for data_label in DATASETS:
        for model_label in MODELS:
            for threat, (norm, eps) in THREATS.items():
                for row in METHODS:
                    for metric, attack in METRICS.items():
                        cells.append(Cell(row=f"{data_label} / {row}",
                                          column=f"{model_label} / perturbation: {norm} / ε = {eps:g} / {metric}",
                                          run=_key(data_label, model_label, threat, row),
                                          checkpoint=checkpoint_read(METHODS[row][0]), attack=attack))
    return cells


TABLE1 = register(Experiment(
    id="table1_bilaw", paper="bilaw", table="table1",
    title="BiLAW Table 1: MNIST / F-MNIST, Tiny-CNN and FC1, clean / PGD-20 / AA accuracy (%)",
    plan=plan_table1, cells=cells_table1, extra_profiles=("quick",), evaluation=evaluation_of(EVALUATION),
    selection=selection,
    notes="Checkpoints: BiLAW rows early-stop on highest PGD-20 accuracy on validation set #2 (`val_stop`, 1000 "
          "training images held out, §4.1); AT, GAIRAT, WMMR and MAIL rows on highest PGD-20 accuracy on the first "
          "1000 test images (the paper gives no rule for them) [AMBIG]: selection on test data. "
          "Plain rows read the last checkpoint: a naturally trained model has no robustness to select on, and "
          "selection by PGD-20 would pick its least-trained epoch [AMBIG]. "
          "MAIL with s = 5, b = 0.05 (the paper's γ, β). ℓ2 columns: training PGD-10, test PGD-20 and AutoAttack "
          "in the ℓ2 ball of radius 0.3, steps of ε/4 along the ℓ2-normalised gradient [AMBIG], uniform starts "
          "in the ball."))

# ---------------------------------------------------------------------------------------------- CIFAR

CIFAR_SETTINGS = {
    "paper": dict(epochs=100, milestones=(30, 60), eval_n=1000),
    "fast": dict(epochs=10, milestones=(3, 6), eval_n=1000),
    "smoke": {**PROFILE_SETTINGS["smoke"], "model": "tiny-cnn"},
}
CIFAR_EVALUATION = {"paper": dict(n=None, aa_n=1000), "fast": dict(n=None, aa_n=1000), "smoke": EVALUATION["smoke"]}
CIFAR_MODELS = {"Small-CNN": "small-cnn", "WRN-10-32": "wrn-32-10"}  # printed "WRN-10-32"; the text: WRN-32-10
CIFAR10_EPS = {"ε = 0.0078": 0.0078, "ε = 0.031": 0.031}
MAIL = ("mail_at", ())  # BiLAW gives no CIFAR settings: MAIL-AT's README values (s = 10, b = −0.5) [AMBIG]
BILAW_TRADES = ("bilaw_trades", ())  # 1/λ = 6, ω_μ: 128 hidden units on the multi-class margin
CIFAR_NOTES = (
    "Checkpoint `best`: BiLAW variants early-stop on highest PGD-20 accuracy on validation set #2 (`val_stop`, "
    "§4.1); the other rows on highest PGD-20 accuracy on the first 1000 test images (no rule given for them) "
    "[AMBIG]: selection on test data. wd 2e-4 [AMBIG]. MAIL = MAIL-AT with its README s = 10, b = −0.5 (BiLAW's CIFAR settings "
    "are unstated) [AMBIG]; GAIRAT reweights from 50% of training with Λ = −1; WMMR α = 0.1. The BiLAW variants "
    "train without their two held-out validation sets (1000 images each); the other methods on the full set.")

TABLE2_METHODS = {
    "GAIRAT": ("gairat", ()),
    "WMMR": ("wmmr", ()),
    "MAIL": MAIL,
    "AT": ("pgd_at", ()),
    "TRADES (1/λ = 6)": ("trades", (("beta", "6"),)),
    "Non-parametric weighting": ("bilaw_np", ()),
    "BiLAW (ours)": ("bilaw", ()),
    "BiLAW-TRADES (ours)": BILAW_TRADES,
}


def table2_run(profile: str, model_label: str, eps_label: str, row: str) -> PlannedRun:
    method, hp = TABLE2_METHODS[row]
    cfg = _config(method, hp, "cifar10", CIFAR_MODELS[model_label], CIFAR10_EPS[eps_label], CIFAR_SETTINGS[profile])
    return PlannedRun(f"CIFAR-10/{model_label}/{eps_label}/{row}", cfg)


def plan_table2(profile: str) -> list[PlannedRun]:
    return [table2_run(profile, model_label, eps_label, row)
            for model_label in CIFAR_MODELS for eps_label in CIFAR10_EPS for row in TABLE2_METHODS]


def cells_table2() -> list[Cell]:
    return [Cell(row=f"CIFAR-10 / {row}", column=f"{model_label} / perturbation: ℓ∞ / {eps_label} / {metric}",
                 run=f"CIFAR-10/{model_label}/{eps_label}/{row}", checkpoint="best", attack=attack)
            for row in TABLE2_METHODS for model_label in CIFAR_MODELS for eps_label in CIFAR10_EPS
            for metric, attack in METRICS.items()]


TABLE2 = register(Experiment(
    id="table2_bilaw", paper="bilaw", table="table2",
    title="BiLAW Table 2: CIFAR-10, Small-CNN and WRN-32-10, ℓ∞ ε = 0.0078 / 0.031, clean / PGD-20 / AA accuracy (%)",
    plan=plan_table2, cells=cells_table2, evaluation=evaluation_of(CIFAR_EVALUATION), selection=selection,
    notes="'WRN-10-32' is the paper's label for its WRN-32-10 (Madry's, 5 blocks per stage). " + CIFAR_NOTES))

TABLE3_METHODS = {
    "BiLAW-TRADES (ours)": BILAW_TRADES,
    "AT": ("pgd_at", ()),
    "TRADES (1/λ = 1)": ("trades", (("beta", "1"),)),
    "TRADES (1/λ = 6)": ("trades", (("beta", "6"),)),
    "GAIRAT": ("gairat", ()),
    "WMMR": ("wmmr", ()),
    "MAIL": MAIL,
}
TABLE3_COLUMN = "WRN-32-10 / perturbation: ℓ∞ / ε = 0.031"


def plan_table3(profile: str) -> list[PlannedRun]:
    return [PlannedRun(f"CIFAR-100/WRN-32-10/ε = 0.031/{row}",
                       _config(method, hp, "cifar100", "wrn-32-10", 0.031, CIFAR_SETTINGS[profile]))
            for row, (method, hp) in TABLE3_METHODS.items()]


def cells_table3() -> list[Cell]:
    return [Cell(row=f"CIFAR-100 / {row}", column=f"{TABLE3_COLUMN} / {metric}",
                 run=f"CIFAR-100/WRN-32-10/ε = 0.031/{row}", checkpoint="best", attack=attack)
            for row in TABLE3_METHODS for metric, attack in METRICS.items()]


TABLE3 = register(Experiment(
    id="table3_bilaw", paper="bilaw", table="table3",
    title="BiLAW Table 3: CIFAR-100, WRN-32-10, ℓ∞ ε = 0.031, clean / PGD-20 / AA accuracy (%)",
    plan=plan_table3, cells=cells_table3, evaluation=evaluation_of(CIFAR_EVALUATION), selection=selection,
    notes="BiLAW-TRADES's two validation sets hold 10 images per class each. " + CIFAR_NOTES))

# ---------------------------------------------------------------------------------------------- Tables 6–8

ABLATION_COLUMNS = {"CIFAR10 / Clean": ("clean", "acc"), "CIFAR10 / PGD": ("pgd20", "acc")}
ABLATION_NOTES = (
    "Ablations of BiLAW-TRADES on CIFAR-10, WRN-32-10, ε = 0.031 (App. A.3): the reference row's published "
    "numbers are Table 2's BiLAW-TRADES ones, so it is read from that very run; the other rows change one "
    "hyperparameter and evaluate clean and PGD-20 only. " + CIFAR_NOTES)


def _ablation(table: str, title: str, rows: dict[str, Hp], columns: dict[str, tuple[str, str]],
              notes: str) -> Experiment:
    """An ablation table: one BiLAW-TRADES run per row, the first row being Table 2's run."""
    reference_row = next(iter(rows))

    def key(row: str) -> str:
        return f"CIFAR-10/WRN-32-10/ε = 0.031/BiLAW-TRADES/{row}"

    def plan(profile: str) -> list[PlannedRun]:
        reference = table2_run(profile, "WRN-10-32", "ε = 0.031", "BiLAW-TRADES (ours)").config
        runs = [PlannedRun(key(reference_row), reference)]
        for row, hp in list(rows.items())[1:]:
            runs.append(PlannedRun(key(row), dataclasses.replace(reference, hp=hp)))
        return runs

    def evaluation(profile: str, run: PlannedRun) -> Evaluation:
        """The reference row is Table 2's run and evaluation; the other rows need clean and PGD-20 only."""
        attacks = ("clean", "pgd20", "aa") if run.key == key(reference_row) else ("clean", "pgd20")
        return evaluation_of(CIFAR_EVALUATION, attacks)(profile, run)

    def cells() -> list[Cell]:
        return [Cell(row=row, column=column, run=key(row), checkpoint="best", attack=attack, stat=stat)
                for row in rows for column, (attack, stat) in columns.items()]

    return register(Experiment(id=f"{table}_bilaw", paper="bilaw", table=table, title=title, plan=plan, cells=cells,
                               notes=f"{notes} {ABLATION_NOTES}", evaluation=evaluation, selection=selection))


TABLE6 = _ablation(
    "table6", "BiLAW Table 6: hidden units of the weighting net ω_μ (BiLAW-TRADES, CIFAR-10, WRN-32-10, ε = 0.031)",
    {"128 hidden units": (), "64": (("hidden", "64"),), "64 – 64": (("hidden", "64-64"),), "256": (("hidden", "256"),)},
    {**ABLATION_COLUMNS, "CIFAR10 / PGD - Clean": ("pgd20", "gap")},
    "'PGD - Clean' is printed so but its values are clean minus PGD-20 accuracy: the `gap` statistic.")
TABLE7 = _ablation(
    "table7", "BiLAW Table 7: TRADES coefficient 1/λ of BiLAW-TRADES (CIFAR-10, WRN-32-10, ε = 0.031)",
    {"1/λ = 6": (), "1/λ = 1": (("beta", "1"),), "1/λ = 5": (("beta", "5"),), "1/λ = 10": (("beta", "10"),)},
    ABLATION_COLUMNS, "1/λ is bilaw_trades' `beta`.")
TABLE8 = _ablation(
    "table8", "BiLAW Table 8: input of the weighting net ω_μ (BiLAW-TRADES, CIFAR-10, WRN-32-10, ε = 0.031)",
    {"multiclass margin (Def. 3)": (), "margin (Def. 2)": (("weight_input", "margin"),),
     "ℓ̂": (("weight_input", "robust_loss"),), "ℓ̂ - ℓ": (("weight_input", "loss_gap"),)},
    ABLATION_COLUMNS,
    "Inputs read off the adversarial example [AMBIG]: Δ (Def. 3), p_y − max_{j≠y} p_j (Def. 2), the robust CE ℓ̂, "
    "and ℓ̂ − ℓ (robust minus clean CE).")

