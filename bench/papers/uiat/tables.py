"""UIAT's tables (Dong et al. 2023; UIAT Tables 1, 3, 5 and 6). Figures: `figures`.

Multi-step recipe [P, §4.1, App. A.2]: ResNet-18, 100 epochs (SVHN 30), batch 128, SGD with Nesterov momentum 0.9,
wd 5e-4, "cyclic" lr with max 0.1 = HAT's OneCycleLR (pct_start 0.25, per batch) [AMBIG], PGD-10 training
adversaries at ε = 8/255 with step 2/255 (SVHN 1/255), no normalisation layer (HAT's code, which UIAT builds on);
λ = 3.5 (SVHN 3.0). Evaluation: natural, PGD-20 of step 2/255 (§4.2, so on SVHN twice the training step),
CW∞ (HAT's: κ = 0, 40 steps, step 0.01; on SVHN, where that step is CIFAR's only, the evaluation step 2/255) and
standard AutoAttack on the full test set. Cells read the last checkpoint [AMBIG: the paper names no selection]; the
best-PGD-20 one on the first 1000 test images (HAT's code rule: selection on test data) is evaluated beside it. Baselines run under the same recipe [AMBIG]: TRADES β = 6, MART β = 5, HAT β = 2.5, γ = 0.5, h = 2
with a naturally trained helper (50 epochs on every data set, best clean test accuracy, as HAT's official code trains it). One seed (the
paper gives none).

Profiles: `fast` keeps every grid at 12–17 % of the epochs (12 of 100, SVHN 5 of 30, single-step 5 of 30, helpers 6
of 50, Fig. 2 25 of 200) — lengths at which the momentum start T = 0.75 and the one-off epoch T′ = 0.8 still fall
inside training — with AutoAttack on 1000 test images; Table 2's wide networks train 5 epochs, for their epoch time.
GPU-hours on one H100 by bench/cost.py (30 TFLOP/s effective, ±2×): one ResNet-18 CIFAR run ≈ 0.4 (0.24 training,
0.12 AA on two checkpoints), so Table 1 ≈ 7.0 (≈ 2.3 per data set), Table 2 ≈ 14.3 (12.7 new: the WRN timing runs
and IAT; its other ResNet-18 runs are Table 1's), Table 3 ≈ 4.8, Table 5 ≈ 3.0, Table 6 ≈ 2.1 (1.7 new); figures
add ≈ 1.2 (Fig. 2), 1.9 (Fig. 3) and 6.1 (Fig. 7) of new runs; everything of this paper ≈ 38.
"""
from __future__ import annotations

from typing import Any, Mapping

from bench.config import RunConfig
from bench.eval_store import Evaluation
from bench.experiments.base import Cell, Experiment, PlannedRun, register
from bench.selection import Best, Rule
from methods import resolved_hparams

EPS_255 = 8  # the paper's ε, in 1/255
INVERSE_EPS_255 = 4  # ε′ = α′ = 4/255 [P], fixed whatever ε is
INVERSE_STEP_255 = 2  # instance-wise α′ = 2/255 [P]
SVHN_EVAL_STEP_255 = 2  # PGD-20's step (§4.2) where SVHN's training step is 1/255; CIFAR's equal their training step
FINAL_ATTACKS = ("clean", "pgd20", "cw", "aa")
PROFILE_SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(eval_n=1000),
    "fast": dict(eval_n=1000),
    "smoke": dict(model="tiny-cnn", train_limit=256, attack_steps=2, eval_n=64, milestones=()),
}
EVALUATION = {"paper": dict(n=None, aa_n=None), "fast": dict(n=None, aa_n=1000), "smoke": dict(n=512, aa_n=16)}
HAT_RULE = Best(attack="pgd20", on="test")  # HAT's code: best PGD-20 test accuracy
HELPER_RULE = Best(attack="clean", on="test")  # HAT's helper: best clean test accuracy (HAT §4.1)


def selection(run: PlannedRun) -> Rule:
    """Helpers and the timing-only wide networks monitor clean accuracy only: their best is the cleanest epoch."""
    return HELPER_RULE if run.config.eval_attacks == ("clean",) else HAT_RULE


def evaluation(profile: str, run: PlannedRun) -> Evaluation:
    """UIAT §4.2's attacks (single-step rows: Table 5's); helpers and timing-only runs: clean accuracy."""
    cfg = run.config
    if cfg.eval_attacks == ("clean",):
        attacks: tuple[str, ...] = ("clean",)
    elif cfg.method.split("+")[0] in SINGLE_STEP_METHODS:
        attacks = SINGLE_STEP_ATTACKS
    else:
        attacks = FINAL_ATTACKS
    return Evaluation(attacks, **EVALUATION[profile])
EPOCHS = {  # training length → epochs per profile
    "cifar": {"paper": 100, "fast": 12, "smoke": 1},
    "svhn": {"paper": 30, "fast": 5, "smoke": 1},
    "helper": {"paper": 50, "fast": 6, "smoke": 1},
    "single_step": {"paper": 30, "fast": 5, "smoke": 1},
    "curves": {"paper": 200, "fast": 25, "smoke": 1},  # Fig. 2's longer runs
    "timing": {"paper": 100, "fast": 5, "smoke": 1},  # Table 2's wide networks: T′ = 0.8 is epoch 4 of 5
}
DATASETS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "SVHN": "svhn"}
METHODS = {"SAT": "pgd_at", "TRADES": "trades", "MART": "mart", "HAT": "hat", "IAT": "iat", "UIAT": "uiat",
           "UIAT (One-off)": "uiat_oneoff"}
INVERSE_METHODS = ("iat", "uiat", "uiat_oneoff")
METHOD_DEFAULTS = {"mart": {"beta": 5.0}}  # MART's ResNet-18 value [AMBIG]
METRICS = {"Natural": "clean", "PGD": "pgd20", "CW": "cw", "AA": "aa"}


def hparams(method: str, **values: Any) -> tuple[tuple[str, str], ...]:
    """Overrides as sorted string pairs, leaving out values equal to the method's defaults, so that one setting
    is always one run (Table 6's full UIAT is Table 1's UIAT run)."""
    defaults = resolved_hparams(method, {})
    return tuple(sorted((k, str(v)) for k, v in values.items() if defaults[k] != v))


def inverse_radii(method: str, eps_255: int) -> dict[str, float]:
    """ε′ = α′ = 4/255 (instance-wise α′ = 2/255) [P] as the fractions of the run's ε the methods take."""
    if method.split("+")[0] in INVERSE_METHODS:
        return dict(inv_eps_ratio=INVERSE_EPS_255 / eps_255, universal_step_ratio=INVERSE_EPS_255 / eps_255,
                    instance_step_ratio=INVERSE_STEP_255 / eps_255)
    if method.endswith("+uiat"):
        return {"uiat.inv_eps_ratio": INVERSE_EPS_255 / eps_255, "uiat.step_ratio": INVERSE_EPS_255 / eps_255}
    return {}


def recipe(profile: str, method: str, dataset: str = "cifar10", model: str = "resnet18", *,
           hp: Mapping[str, Any] | None = None, eps_255: int = EPS_255, length: str | None = None,
           **changes: Any) -> RunConfig:
    """UIAT's multi-step recipe for one run; `changes` replace recipe fields, the profile's settings win."""
    values = {**METHOD_DEFAULTS.get(method, {}), **inverse_radii(method, eps_255), **(hp or {})}
    if method in INVERSE_METHODS and dataset == "svhn":
        values.setdefault("lam", 3.0)
    eps = eps_255 / 255
    base: dict[str, Any] = dict(
        method=method, hp=hparams(method, **values), dataset=dataset, model=model,
        epochs=EPOCHS[length or ("svhn" if dataset == "svhn" else "cifar")][profile], batch_size=128, lr=0.1,
        momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle", eps=eps,
        step_size=eps / 8 if dataset == "svhn" else eps / 4, attack_steps=10, seed=0,
        eval_step_size=SVHN_EVAL_STEP_255 / 255 if dataset == "svhn" else None)
    return RunConfig(**{**base, **changes, **PROFILE_SETTINGS[profile]})


def helper_run(profile: str, key: str, dataset: str = "cifar10", model: str = "resnet18") -> PlannedRun:
    """HAT's naturally trained helper (HAT, Rade & Moosavi-Dezfooli 2022): 50 epochs of the same recipe, best clean test accuracy."""
    return PlannedRun(key, recipe(profile, "natural", dataset, model, length="helper", attack_steps=0,
                                  eval_attacks=("clean",)))


def method_run(profile: str, key: str, row: str, dataset: str = "cifar10", model: str = "resnet18",
               helper: PlannedRun | None = None, **changes: Any) -> PlannedRun:
    """The run of a row label of METHODS; HAT reads `helper` by run id and is trained after it."""
    method = METHODS[row]
    if method != "hat":
        return PlannedRun(key, recipe(profile, method, dataset, model, **changes))
    helper_id = helper.config.run_id()
    return PlannedRun(key, recipe(profile, method, dataset, model, hp={"helper": helper_id}, **changes),
                      needs=(helper_id,))


# ---- Table 1: ResNet-18 on CIFAR-10 / CIFAR-100 / SVHN --------------------------------------------------------

TABLE1_ROWS = ("SAT", "TRADES", "MART", "HAT", "UIAT", "UIAT (One-off)")


def plan_table1(profile: str) -> list[PlannedRun]:
    runs = []
    for label, dataset in DATASETS.items():
        helper = helper_run(profile, f"{label}/ResNet-18/helper", dataset)
        runs.append(helper)
        runs += [method_run(profile, f"{label}/ResNet-18/{row}", row, dataset, helper=helper) for row in TABLE1_ROWS]
    return runs


def cells_table1() -> list[Cell]:
    return [Cell(row, f"{label} / {metric}", f"{label}/ResNet-18/{row}", "last", attack)
            for row in TABLE1_ROWS for label in DATASETS for metric, attack in METRICS.items()]


TABLE1 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table1_uiat", paper="uiat", table="table1",
    title="UIAT Table 1: ResNet-18, CIFAR-10 / CIFAR-100 / SVHN, natural / PGD-20 / CW / AA accuracy (%)",
    plan=plan_table1, cells=cells_table1,
    notes="Last checkpoint [AMBIG]. MART β = 5 and the baselines under UIAT's recipe [AMBIG: UIAT §4.1 does not give them]. "
          "SVHN: trained with step 1/255, evaluated with PGD-20 (and CW) of step 2/255 (§4.2)."))


# ---- Table 2: training minutes per epoch on CIFAR-10 ----------------------------------------------------------

ARCHITECTURES = {"ResNet-18": "resnet18", "WRN-28": "wrn-28-10", "WRN-34": "wrn-34-10"}
TABLE2_ROWS = ("Natural Training", "TRADES", "HAT", "IAT", "UIAT", "UIAT (One-off)")
TIMING_ONLY = dict(length="timing", eval_attacks=("clean",))  # wide nets


def _table2_key(arch: str, row: str) -> str:
    return f"CIFAR-10/{arch}/{'helper' if row == 'Natural Training' else row}"


def plan_table2(profile: str) -> list[PlannedRun]:
    runs = []
    for arch, model in ARCHITECTURES.items():
        helper = helper_run(profile, _table2_key(arch, "Natural Training"), "cifar10", model)
        wide = {} if model == "resnet18" else TIMING_ONLY
        runs.append(helper)
        runs += [method_run(profile, _table2_key(arch, row), row, "cifar10", model, helper=helper, **wide)
                 for row in TABLE2_ROWS if row != "Natural Training"]
    return runs


def cells_table2() -> list[Cell]:
    return [Cell(row, arch, _table2_key(arch, row), "last", "clean", "epoch_seconds")
            for row in TABLE2_ROWS for arch in ARCHITECTURES]


TABLE2 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table2_uiat", paper="uiat", table="table2",
    title="UIAT Table 2: CIFAR-10 training time (min/epoch), ResNet-18 / WRN-28-10 / WRN-34-10",
    plan=plan_table2, cells=cells_table2,
    notes="Mean wall-clock training time per epoch, evaluation excluded, at the runs' precision (default: "
          "PyTorch's, as the paper's code) on the bench's device (the paper: one A100); compare rows only within "
          "one device type. 'Natural Training' is timed on HAT's "
          "natural helper run (same recipe, 50 instead of 100 epochs; the time per epoch does not depend on it). "
          "ResNet-18 runs are Table 1's; the WRN runs are trained for their time only (clean evaluation; fast profile: "
          "5 epochs)."))


# ---- Table 3: larger training / evaluation radii --------------------------------------------------------------

TABLE3_EPS = (10, 12, 16)
TABLE3_ROWS = ("TRADES", "HAT", "UIAT", "UIAT (One-off)")
NATURAL_ROBUST = {"Natural": "clean", "Robust": "aa"}


def plan_table3(profile: str) -> list[PlannedRun]:
    helper = helper_run(profile, "CIFAR-10/ResNet-18/helper")
    return [helper, *(method_run(profile, f"eps={k}/255/{row}", row, helper=helper, eps_255=k)
                      for k in TABLE3_EPS for row in TABLE3_ROWS)]


def cells_table3() -> list[Cell]:
    return [Cell(f"eps={k}/255 / {row}", column, f"eps={k}/255/{row}", "last", attack)
            for k in TABLE3_EPS for row in TABLE3_ROWS for column, attack in NATURAL_ROBUST.items()]


TABLE3 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table3_uiat", paper="uiat", table="table3",
    title="UIAT Table 3: ResNet-18 on CIFAR-10 trained and attacked at ε = 10, 12, 16 /255, natural / AA accuracy (%)",
    plan=plan_table3, cells=cells_table3,
    notes="Training step ε/4 (2/255 at 8/255) and PGD-10 [AMBIG]; ε′ = α′ = 4/255 kept fixed as the paper states "
          "it (not scaled with ε); 'Robust' = standard AutoAttack at the training ε, last checkpoint."))


# ---- Table 4: extra DDPM data (not runnable) ------------------------------------------------------------------

TABLE4_GRID = (("CIFAR-10", "PRN-18"), ("CIFAR-10", "WRN-28-10"), ("CIFAR-100", "PRN-18"), ("CIFAR-100", "WRN-28-10"))
TABLE4_ROWS = ("Rebuffi et al.", "HAT", "UIAT", "UIAT (One-off)")
EXTRA_DATA = "needs 1M DDPM-generated images (extra data; App. A.1), SiLU nets and 400-epoch batch-512 recipe"


def plan_table4(profile: str) -> list[PlannedRun]:
    why = {row: EXTRA_DATA for row in TABLE4_ROWS}
    why["Rebuffi et al."] = "Rebuffi et al.'s recipe (TRADES + 1M DDPM images + weight averaging) is not a bench method"
    return [PlannedRun(f"{dataset}/{arch}/{row}", None, why[row])
            for dataset, arch in TABLE4_GRID for row in TABLE4_ROWS]


def cells_table4() -> list[Cell]:
    return [Cell(f"{dataset} / {arch} / {row}", column, f"{dataset}/{arch}/{row}", "last", attack)
            for dataset, arch in TABLE4_GRID for row in TABLE4_ROWS
            for column, attack in NATURAL_ROBUST.items()]


TABLE4 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table4_uiat", paper="uiat", table="table4",
    title="UIAT Table 4: PRN-18 / WRN-28-10 with 1M extra DDPM images, natural / AA accuracy (%) — not runnable",
    plan=plan_table4, cells=cells_table4,
    notes="The bench has no extra-data loader (1M DDPM images), no SiLU PRN-18 and no Rebuffi et al. method."))


# ---- Table 5: single-step AT with and without +UIAT ----------------------------------------------------------

TABLE5_EPS = (6, 8, 10)
SINGLE_STEP = {  # row → method, max lr, normalisation layer (UIAT Table 5, App. B.3)
    "N-FGSM": ("nfgsm", 0.2, True), "RS-FGSM": ("rs_fgsm", 0.2, True), "GradAlign": ("gradalign", 0.3, False)}
SINGLE_STEP_ATTACKS = ("clean", "pgd20", "aa")
SINGLE_STEP_METHODS = tuple(method for method, _, _ in SINGLE_STEP.values())


def single_step_run(profile: str, row: str, eps_255: int) -> PlannedRun:
    """A Table 5 run: PreAct-ResNet-18 variant A, 30 epochs of the triangular cyclic lr, no Nesterov [AMBIG]."""
    method, lr, normalize = SINGLE_STEP[row.removesuffix(" + UIAT")]
    if row.endswith(" + UIAT"):
        method += "+uiat"
    return PlannedRun(f"eps={eps_255}/255/{row}", recipe(
        profile, method, "cifar10", "preact-resnet18", eps_255=eps_255, length="single_step", lr=lr,
        nesterov=False, schedule="cyclic", normalize=normalize, attack_steps=1))


TABLE5_ROWS = tuple(name for row in SINGLE_STEP for name in (row, f"{row} + UIAT"))


def plan_table5(profile: str) -> list[PlannedRun]:
    return [single_step_run(profile, row, k) for k in TABLE5_EPS for row in TABLE5_ROWS]


def cells_table5() -> list[Cell]:
    cells = [Cell(row, f"eps={k}/255 / {column}", f"eps={k}/255/{row}", "last", attack)
             for row in TABLE5_ROWS for k in TABLE5_EPS for column, attack in NATURAL_ROBUST.items()]
    return cells + [Cell(row, "Time(s)", f"eps={EPS_255}/255/{row}", "last", "clean", "epoch_seconds")
                    for row in TABLE5_ROWS]


TABLE5 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table5_uiat", paper="uiat", table="table5",
    title="UIAT Table 5: single-step AT ± one-off UIAT on CIFAR-10 (PRN-18), natural / AA accuracy (%) and s/epoch",
    plan=plan_table5, cells=cells_table5,
    notes="PRN-18 variant A for all three [AMBIG]; 30 epochs, triangular cyclic lr (peak at 2/5) with max 0.2 "
          "(RS-FGSM, N-FGSM; normalisation layer as their codes) or 0.3 (GradAlign, no normalisation); +UIAT: "
          "λ = 3.5, T′ = 0.8·epochs, CE-only universal step [AMBIG; UIAT App. B.3], ε′ = α′ = 4/255 at every ε as the "
          "paper states it. Last checkpoint (no early stop: "
          "RS-FGSM at 10/255 is expected to overfit catastrophically). Time(s) is read from the ε = 8/255 runs."))


# ---- Table 6: ablation of UIAT's components -------------------------------------------------------------------

ABLATION = {  # row → uiat hyperparameters (UAG = universal, FR = β > 0, IAM = momentum; methods/uiat.py)
    "1 (none)": dict(universal=False, beta=0.0, momentum=False),
    "2 (UAG)": dict(beta=0.0, momentum=False),
    "3 (UAG+FR)": dict(momentum=False),
    "4 (UAG+IAM)": dict(beta=0.0),
    "5 (UAG+FR+IAM)": {},
}
ABLATION_METRICS = {"Natural": "clean", "PGD-20": "pgd20", "AA": "aa"}


def plan_table6(profile: str) -> list[PlannedRun]:
    return [PlannedRun(row, recipe(profile, "uiat", hp=values)) for row, values in ABLATION.items()]


def cells_table6() -> list[Cell]:
    return [Cell(row, column, row, "last", attack) for row in ABLATION for column, attack in ABLATION_METRICS.items()]


TABLE6 = register(Experiment(
    evaluation=evaluation, selection=selection,
    id="table6_uiat", paper="uiat", table="table6",
    title="UIAT Table 6: ablation of UAG / FR / IAM, ResNet-18 on CIFAR-10, natural / PGD-20 / AA accuracy (%)",
    plan=plan_table6, cells=cells_table6,
    notes="Row 1 is instance-wise IAT with β = 0 and no momentum (UIAT Table 6); row 5 is Table 1's UIAT run."))

