"""CFA's tables and figures: the planned grids follow the paper's recipe, cells sit where the paper prints them
and read the right checkpoint, claims cover the tables, and smoke runs fill cells and figures."""
import dataclasses
import math

import pytest

from bench.eval_store import Evaluation
from bench.selection import CFASelect
from bench.data import DATASETS
from bench.experiments import Cell
from bench.papers import EXPERIMENTS, FIGURES, lookup
from bench.experiments.claims import load_claims
from bench.experiments.figures import draw
from bench.experiments.render import collect
from bench.published import load_published
from bench.store import RunStore
from bench.train import train_run
from methods import resolved_hparams

SMOKE_DATA = {"cifar10": "fmnist"}  # real data present on every test machine (CIFAR-10 is not; cifar10-jpeg may not be)
HOT_START = "CIFAR-10/FRL hot start (AT, epoch 100)"
TABLES = ("table1_cfa", "table2_cfa", "table3_cfa", "table4_cfa")
FIGURE_IDS = ("fig2_cfa", "fig3_cfa", "fig4_cfa", "fig5_cfa", "fig6_cfa", "fig7_cfa")
# (rows runnable, rows not runnable) per grid and the seeds of each profile: the paper reports 5 seeds. Table 1:
# 9 rows, FRL and FRL + EMA, and the PGD-AT hot start they fine-tune.
GRIDS = {"table1_cfa": (9 + 2 + 1, 0), "table2_cfa": (8, 0), "table3_cfa": (6, 0), "table4_cfa": (9, 0),
         "fig6_cfa": (6, 0)}
SWEEPS = {"fig2_cfa": (1, 7), "fig3_cfa": (8, 0), "fig4_cfa": (3, 0), "fig5_cfa": (6, 0), "fig7_cfa": (6, 0)}
SEEDS = {"paper": 5, "fast": 1, "smoke": 1}


def _runs(artifact_id, profile="paper"):
    return lookup(artifact_id).runs(profile)


def _config(artifact_id, run_key, profile="paper", seed=0):
    return next(r.config for r in _runs(artifact_id, profile) if r.key == run_key and r.config.seed == seed)


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_each_grid_plans_the_papers_rows_with_its_seeds(profile):
    for artifact_id, (runnable, blocked) in GRIDS.items():
        runs = _runs(artifact_id, profile)
        assert sum(r.config is not None for r in runs) == runnable * SEEDS[profile], artifact_id
        assert sum(r.config is None for r in runs) == blocked, artifact_id
    for artifact_id, (runnable, blocked) in SWEEPS.items():  # sweeps: one seed, as the paper's figures
        runs = _runs(artifact_id, profile)
        assert (sum(r.config is not None for r in runs), sum(r.config is None for r in runs)) == (runnable, blocked)
    starts = {r.config.seed: r.config.run_id() for r in _runs("table1_cfa", profile) if r.key == HOT_START}
    assert len(starts) == SEEDS[profile]
    for run in _runs("table1_cfa", profile):  # each seed's FRL rows fine-tune that seed's hot start
        if run.key in ("CIFAR-10/FRL", "CIFAR-10/FRL + EMA"):
            assert run.config.init_from == starts[run.config.seed] and run.needs == (run.config.init_from,)
        else:
            assert run.config.init_from is None and run.needs == ()
    assert lookup("fig1_cfa").runs(profile) == []


def test_cells_sit_where_the_paper_prints_them_and_read_the_reported_model():
    published = load_published("cfa")
    for table_id in TABLES:
        experiment = EXPERIMENTS.get(table_id)
        cells = experiment.cells()
        table = published[published["table"] == experiment.table]
        assert {(c.row, c.column) for c in cells} == set(zip(table["row"], table["column"]))
        runs = experiment.runs("paper")
        for cell in cells:
            planned = [r for r in runs if r.key == cell.run]
            assert planned and all(r.config is None or cell.attack in r.evaluation.attacks for r in planned)
            averaged = "_ema" if cell.row.endswith("EMA") else "_fawa" if cell.row.endswith(("CFA", "FAWA")) else ""
            assert cell.checkpoint.endswith(averaged) and cell.checkpoint.split("_")[0] in ("best", "last")
            assert cell.attack in ("clean", "aa") and cell.stat in ("acc", "worst", "worst20")
    t4 = EXPERIMENTS.get("table4_cfa").cells()
    assert {c.stat for c in t4 if c.column.endswith("Worst-20%")} == {"worst20"}
    t2 = {(c.row, c.column): c for c in EXPERIMENTS.get("table2_cfa").cells()}
    assert t2[("TRADES + CCM + CCR", "Worst Robust")] == Cell(
        "TRADES + CCM + CCR", "Worst Robust", "CIFAR-10/TRADES + CCM + CCR", "best", "aa", "worst")


def test_paper_profile_carries_the_papers_recipe():
    at_cfa = _config("table1_cfa", "CIFAR-10/AT + CFA")
    schedule = (at_cfa.epochs, at_cfa.milestones, at_cfa.lr, at_cfa.weight_decay, at_cfa.batch_size)
    assert schedule == (200, (100, 150), 0.1, 5e-4, 128)
    setting = (at_cfa.model, at_cfa.dataset, at_cfa.normalize, at_cfa.attack_steps)
    assert setting == ("preact-resnet18", "cifar10", True, 10)
    info = DATASETS.get("cifar10")  # ε and step left to the dataset: 8/255 and 2/255
    assert at_cfa.eps is None and math.isclose(info.default_eps, 8 / 255) and math.isclose(info.default_step, 2 / 255)
    planned = next(r for r in _runs("table1_cfa") if r.key == "CIFAR-10/AT + CFA")
    # CFA train.py: second half, within 0.02 of the best PGD-10 avg + worst so far, plus the last 5; AA decides
    assert planned.selection == CFASelect("pgd10", "test", "acc+worst", 0.02, 5, 0.5, "aa")
    assert planned.evaluation == Evaluation(("clean", "aa"))  # the whole test set at the paper profile
    assert at_cfa.eval_n is None and at_cfa.scenario.heldout == "cfa_val"
    tiny = next(r for r in _runs("table4_cfa") if r.key == "Tiny-ImageNet/AT")
    assert tiny.selection.score == "acc+worst20"  # App. C.1: the worst 20% of classes replace the worst class
    hp = resolved_hparams(at_cfa.method, at_cfa.hp_dict)
    assert hp["bn_mode"] == "train" and (hp["cfa.decay"], hp["cfa.threshold"], hp["cfa.start_epoch"]) == (0.85, 0.2, 50)
    assert resolved_hparams("trades+cfa", _config("table1_cfa", "CIFAR-10/TRADES + CFA").hp_dict)["loss_scale"] == "cfa"
    assert resolved_hparams("fat", _config("table1_cfa", "CIFAR-10/FAT").hp_dict) == {"variant": "cfa", "tau": 3}
    for row in ("AT", "AT + EMA", "TRADES", "FAT"):  # every row trains on the same 98% (CFA §5.1)
        assert _config("table1_cfa", f"CIFAR-10/{row}").scenario.heldout == "cfa_val"
    assert {r.config.seed for r in _runs("table1_cfa") if r.key == "CIFAR-10/TRADES"} == {0, 1, 2, 3, 4}
    ti = _config("table4_cfa", "Tiny-ImageNet/TRADES + CFA")
    assert (ti.dataset, ti.model, ti.epochs) == ("tinyimagenet", "resnet18", 200)
    assert resolved_hparams(ti.method, ti.hp_dict)["cfa.worst"] == "worst20"


def test_frl_fine_tunes_cfas_pgd_at_stopped_before_its_first_lr_drop():
    at, start = _config("table1_cfa", "CIFAR-10/AT", seed=3), _config("table1_cfa", HOT_START, seed=3)
    assert (start.epochs, start.milestones) == (100, (100, 150))  # = epoch 100 of the 200-epoch run
    assert dataclasses.replace(start, epochs=200) == at
    for row, method in (("CIFAR-10/FRL", "frl_rwrm"), ("CIFAR-10/FRL + EMA", "frl_rwrm+ema")):
        frl = _config("table1_cfa", row, seed=3)
        assert (frl.method, frl.init_from, frl.scenario.heldout) == (method, start.run_id(), "frl_meta")
        assert (frl.epochs, frl.schedule, frl.lr, frl.momentum, frl.weight_decay, frl.batch_size) == \
               (40, "constant", 0.001, 0.9, 5e-4, 128)
        assert (frl.model, frl.normalize) == (start.model, start.normalize)
    assert resolved_hparams("frl_rwrm+ema", _config("table1_cfa", "CIFAR-10/FRL + EMA").hp_dict)["ema.start_epoch"] == 10
    fast_start, fast_frl = _config("table1_cfa", HOT_START, "fast"), _config("table1_cfa", "CIFAR-10/FRL", "fast")
    assert (fast_start.epochs, fast_start.milestones, fast_frl.epochs) == (10, (10, 15), 4)


def test_shorter_profiles_scale_the_epoch_hyperparameters_and_subsample_autoattack():
    fast = _config("table1_cfa", "CIFAR-10/AT + CFA", "fast")
    assert (fast.epochs, fast.milestones) == (20, (10, 15))
    fast_run = next(r for r in _runs("table1_cfa", "fast") if r.key == "CIFAR-10/AT + CFA")
    assert (fast_run.evaluation.n, fast_run.evaluation.aa_n) == (None, 1000)
    hp = resolved_hparams(fast.method, fast.hp_dict)
    assert (hp["cfa.start_epoch"], hp["cfa.begin_epoch"]) == (5, 1)  # 50 and 10 of 200 epochs
    smoke = _config("table3_cfa", "CIFAR-10/AT + EMA", "smoke")
    assert smoke.model == "tiny-cnn" and resolved_hparams(smoke.method, smoke.hp_dict)["ema.start_epoch"] == 1
    assert resolved_hparams(smoke.method, smoke.hp_dict)["ema.decay"] == 0.85


def test_figure_sweep_points_equal_to_table_rows_are_the_same_runs():
    # λ₁ = 0.5 given explicitly is AT's default λ₁: one run id (issue 12: placeholders resolved before hashing)
    assert _config("fig5_cfa", "CIFAR-10/AT + CCM λ=0.5").run_id() == _config("table2_cfa", "CIFAR-10/AT + CCM").run_id()
    assert _config("fig7_cfa", "CIFAR-10/TRADES + CCM + CCR λ=0.5") == _config("table2_cfa",
                                                                             "CIFAR-10/TRADES + CCM + CCR")
    assert _config("fig3_cfa", "CIFAR-10/TRADES β=6") == _config("table1_cfa", "CIFAR-10/TRADES")
    assert _config("fig2_cfa", "CIFAR-10/AT ε=8/255") == _config("table1_cfa", "CIFAR-10/AT")
    assert _config("fig5_cfa", "CIFAR-10/AT + CCM λ=0.3").hp_dict["ccm.lam1"] == 0.3


def test_claims_cover_the_tables_the_paper_makes_statements_about():  # judged in tests/test_claims.py
    claims = load_claims("cfa")
    assert len(claims) >= 10 and {c.table for c in claims} == {"table1", "table2", "table3", "table4"}


# -- smoke runs ----------------------------------------------------------------------------------------------

SMOKE_RUNS = ("CIFAR-10/AT", "CIFAR-10/AT + EMA", "CIFAR-10/AT + FAWA", "CIFAR-10/AT + CCM", "CIFAR-10/TRADES",
              "CIFAR-10/TRADES + CCM + CCR", HOT_START, "CIFAR-10/FRL")


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """The smoke runs behind Tables 1–3 (FRL after its hot start) and Figs. 4, 5, 7, trained once on
    CIFAR-10-JPEG."""
    store = RunStore(tmp_path_factory.mktemp("cfa_runs"))
    planned = {r.key: r for t in TABLES[:3] for r in lookup(t).runs("smoke", SMOKE_DATA) if r.config}
    results = {name: train_run(planned[name].config, store.run_dir(planned[name].config),
                               evaluation=planned[name].evaluation, selection=planned[name].selection)
               for name in SMOKE_RUNS}
    return store, {name: store.run_dir(planned[name].config) for name in SMOKE_RUNS}, results


def test_a_smoke_run_fills_its_cells_in_the_published_unit(smoke_store):
    store, _, results = smoke_store
    cells = collect(EXPERIMENTS.get("table1_cfa"), store, "smoke", SMOKE_DATA).set_index(["row", "column"])
    worst = cells.loc[("AT", "Best / AA. Accuracy / Worst")]
    assert worst["status"] == "done" and worst["published"] == 20.1
    at_best = results["CIFAR-10/AT"]["checkpoints"]["best"]["attacks"]["aa"]
    assert worst["ours"] == pytest.approx(100 * at_best["worst_class_acc"])
    ema = cells.loc[("AT + EMA", "Last / Clean Accuracy / Avg.")]  # the averaged model, not the trained one
    ema_last = results["CIFAR-10/AT + EMA"]["checkpoints"]["last_ema"]["attacks"]["clean"]
    assert ema["status"] == "done" and ema["ours"] == pytest.approx(100 * ema_last["acc"])
    frl = cells.loc[("FRL", "Best / AA. Accuracy / Avg.")]
    frl_best = results["CIFAR-10/FRL"]["checkpoints"]["best"]["attacks"]["aa"]
    assert frl["status"] == "done" and frl["ours"] == pytest.approx(100 * frl_best["acc"])
    assert cells.loc[("FAT", "Best / AA. Accuracy / Avg."), "status"] == "not run"


def test_smoke_runs_record_the_series_the_figures_read(smoke_store):
    _, runs, _ = smoke_store
    record = runs["CIFAR-10/AT + CCM"].records()[0]
    assert len(record["eval"]["attacks"]["pgd10"]["per_class"]) == 10
    lam1, eps = record["ccm.lam1"], DATASETS.get("fmnist").default_eps
    assert lam1 == 0.5 and record["ccm.class_eps"] == pytest.approx([lam1 * eps] * 10)  # A = 0 before epoch 1
    trades = runs["CIFAR-10/TRADES + CCM + CCR"].records()[0]
    assert trades["ccr.class_beta"] == pytest.approx([0.5 * 6.0] * 10) and len(trades["ccm.class_eps"]) == 10
    assert set(runs["CIFAR-10/AT + EMA"].records()[0]["eval_averaged"]["ema"]["attacks"]) == {"clean", "pgd10"}
    fawa = runs["CIFAR-10/AT + FAWA"].records()[0]
    assert 0 <= fawa["fawa.val_worst_robust"] <= 1
    assert fawa["fawa.accepted"] == (fawa["fawa.val_worst_robust"] >= 0.2)


def _drawn(figure_id, runs_dir, out_dir):
    paths, missing = draw(FIGURES.get(figure_id), str(runs_dir), "smoke", out_dir, SMOKE_DATA)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    return missing


def test_every_figure_draws_from_smoke_runs_and_from_nothing(smoke_store, tmp_path):
    store, _, _ = smoke_store
    for figure_id in FIGURE_IDS:
        keys = {run.key for run in FIGURES.get(figure_id).runs("smoke")}
        missing = _drawn(figure_id, store.root, tmp_path / "smoke")
        assert len(missing) < len(keys) and set(missing) < keys  # every figure had a finished run to draw
        assert set(_drawn(figure_id, tmp_path / "empty", tmp_path / "empty_figs")) == keys
    assert _drawn("fig4_cfa", store.root, tmp_path / "smoke") == []
