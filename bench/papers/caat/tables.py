"""CAAT's tables (CAAT §4.1–4.3; Xu et al. 2021, FRL; Zhou, Yang & Wu 2023, CAAT §3; the papers' experiment sections). Tables 1–4: PreAct-ResNet-18 (variant B) on CIFAR-10,
average and worst-class natural / boundary / robust errors under PGD-20 (ε = 8/255, step 2/255), for PGD-AT,
TRADES (1/λ = 1, 6), Baseline ReWeight, the three FRL variants and CAAT with its two bounds. Table 1:
standard CIFAR-10; Table 2: 20% pair-flip label noise; Table 3: long tail, imbalance factor 10; Table 4: the
ablation Settings I–IV on standard CIFAR-10. Every row fine-tunes a robust hot start: the runs, their recipe
and their data are in `runs`, the figures in `figures`. Cells read the last epoch (CAAT's code has no selection).
"""
from __future__ import annotations

from bench.experiments.base import Cell, Experiment, register
from bench.papers.caat.runs import (CORRUPTED_ROWS, LONG_TAIL_10, PAIR_FLIP_20, ROWS, SETTINGS, STANDARD,
                                   evaluation, key, planned, selection)

CHECKPOINT = "last"
AVERAGE = {"Avg. Nat.": "nat_avg", "Avg. Bdy.": "bdy_avg", "Avg. Rob.": "rob_avg"}
AVERAGE_AND_WORST = {"Avg. Nat.": "nat_avg", "Worst Nat.": "nat_worst", "Avg. Bdy.": "bdy_avg",
                     "Worst Bdy.": "bdy_worst", "Avg. Rob.": "rob_avg", "Worst Rob.": "rob_worst"}


def cells_of(scenario: str, rows: dict, columns: dict[str, str], suffix: str = "") -> list[Cell]:
    return [Cell(row=row, column=column + suffix, run=key(scenario, row), checkpoint=CHECKPOINT, attack="pgd20",
                 stat=stat) for row in rows for column, stat in columns.items()]


NOTES = ("Every row fine-tunes a robust hot start 40 epochs at constant lr 0.001 (FRL's and CAAT's code), "
         "baselines included [AMBIG]; the hot start (FRL's recipe is undocumented [AMBIG]) is TRADES β = 6, "
         "100 epochs, lr 0.1 ÷10 at 75 and 90 (TRADES's schedule), weight decay 5e-4, on the table's training "
         "set. Last epoch. Training ε = 8/255 as in the paper (the official code trains at 10/255). CAAT λ = 1.5 "
         "(code default); FRL rows with their official codes' hyperparameters.")

TABLE1 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table1_caat", paper="caat", table="table1",
    title="CAAT Table 1: CIFAR-10, PRN-18, average and worst-class natural / boundary / robust error (%)",
    plan=lambda profile: planned(profile, STANDARD, ROWS),
    cells=lambda: cells_of(STANDARD, ROWS, AVERAGE_AND_WORST),
    notes=NOTES + " FRL-split training set (47,000 images) for the hot start and the non-CAAT rows, CAAT's meta "
                  "split for CAAT (from the same hot start); the published non-CAAT rows are FRL's own numbers "
                  "(Xu et al. 2021, FRL)."))

TABLE2 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table2_caat", paper="caat", table="table2",
    title="CAAT Table 2: CIFAR-10 with 20% pair-flip label noise, average errors (%)",
    plan=lambda profile: planned(profile, PAIR_FLIP_20, CORRUPTED_ROWS),
    cells=lambda: cells_of(PAIR_FLIP_20, CORRUPTED_ROWS, AVERAGE),
    notes=NOTES + " 'Pair-flip' = MW-Net's flip2 (each class to two random others, 10% each; CAAT README) "
                  "[AMBIG]; every run, hot start included, trains on the same noisy set (CAAT's meta split, "
                  "seed 100); clean meta set."))

TABLE3 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table3_caat", paper="caat", table="table3",
    title="CAAT Table 3: long-tailed CIFAR-10 (imbalance factor 10), average errors (%)",
    plan=lambda profile: planned(profile, LONG_TAIL_10, CORRUPTED_ROWS),
    cells=lambda: cells_of(LONG_TAIL_10, CORRUPTED_ROWS, AVERAGE),
    notes=NOTES + " Cui et al.'s profile n_c = int(4700/10^(c/9)), class 0 the head (the code shuffles the "
                  "counts); every run, hot start included, on the same long-tailed set (CAAT's meta split, balanced "
                  "300/class)."))

TABLE4 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table4_caat", paper="caat", table="table4",
    title="CAAT Table 4: ablation Settings I–IV on CIFAR-10, average errors (%)",
    plan=lambda profile: planned(profile, STANDARD, SETTINGS),
    cells=lambda: cells_of(STANDARD, SETTINGS, AVERAGE, suffix=" (%)"),
    notes=NOTES + " I: all adversaries, fixed ε; II: all adversaries, ReMargin; III: learned directions, "
                  "fixed ε; IV: learned directions, ReMargin (= Table 1's CAAT (ReMargin) run)."))
