"""CAAT's tables and figures: the paper's grid in every profile, cells in the published layout, a smoke run
filling its cells in err%, the per-class and per-sample series CAAT records for Figs. 3–4, and every figure
drawn from smoke runs (or from none)."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.caat.caat as caat
from bench.data import Split
from bench.papers import EXPERIMENTS, FIGURES
from bench.papers.caat import figures as caat_figures
from bench.experiments.base import FigureInput
from bench.papers.caat.runs import HOT_START, key
from bench.experiments.claims import load_claims
from bench.experiments.figures import figure_input
from bench.experiments.render import collect
from bench.experiments.stats import STATS
from bench.published import load_published
from bench.store import RunDir, RunStore
from bench.train import check_heldout, train_run
from methods import Batch, MethodContext, build_method
from methods.fairness.constraints import ClassErrors

TABLES = ("table1_caat", "table2_caat", "table3_caat", "table4_caat")
# CIFAR-10 is not on this machine, and a smoke run's final PGD-20 pass over 10,000 test images costs 1.5× more on
# 3×32×32 images than on F-MNIST's 1×28×28: the mechanics under test do not depend on the data set.
SUBSTITUTE = {"cifar10": "fmnist"}
C = 10

# The paper's grid, plus one hot start per training set that the rows fine-tune: Table 1 has 9 rows, Tables 2–3
# drop Baseline ReWeight, Table 4 has Settings I–IV; Fig. 3 reads Table 1's two CAAT runs, Fig. 4 one
# noisy-label CAAT run, Fig. 5 Table 3's rows at IF 10 and 100 (two training sets, two hot starts).
EXPECTED_RUNS = {"table1_caat": 9 + 1, "table2_caat": 8 + 1, "table3_caat": 8 + 1, "table4_caat": 4 + 1,
                 "fig3_caat": 2 + 1, "fig4_caat": 1 + 1, "fig5_caat": 2 * (8 + 1)}


def _artifact(name):
    return EXPERIMENTS.get(name) if name.startswith("table") else FIGURES.get(name)


def _run(name, profile, run_key):
    return next(r for r in _artifact(name).runs(profile) if r.key == run_key)


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_every_id_plans_the_paper_grid_and_every_run_is_runnable(profile):
    for name, expected in EXPECTED_RUNS.items():
        runs = _artifact(name).runs(profile)
        assert len(runs) == expected and all(r.config is not None for r in runs), name
        assert len({r.key for r in runs}) == expected
        starts = {r.key.split("/")[0]: r.config for r in runs if r.key.endswith(f"/{HOT_START}")}
        for run in runs:
            check_heldout(run.config)  # FRL, Baseline ReWeight and CAAT get their meta split
            start = starts[run.key.split("/")[0]]  # every row fine-tunes its training set's hot start
            if run.config != start:
                assert run.config.init_from == start.run_id() and run.needs == (start.run_id(),), run.key
                assert run.config.scenario.noise == start.scenario.noise
                assert run.config.scenario.imbalance == start.scenario.imbalance


def test_cells_match_the_published_layout_and_read_planned_runs_and_attacks():
    published = load_published("caat")
    for name in TABLES:
        experiment = EXPERIMENTS.get(name)
        table = published[published["table"] == experiment.table]
        cells = experiment.cells()
        assert {(c.row, c.column) for c in cells} == set(zip(table["row"], table["column"]))
        assert len(cells) == len(table)
        planned = {r.key: r for r in experiment.runs("paper")}
        for cell in cells:
            assert cell.stat in STATS and cell.checkpoint == "last"
            assert {"clean", "pgd20"} <= set(planned[cell.run].evaluation.attacks)
            assert planned[cell.run].selection.spec() == "last"  # CAAT's code has no selection


def test_paper_profile_carries_the_papers_settings():
    for name in TABLES:
        for run in EXPERIMENTS.get(name).runs("paper"):
            c = run.config
            assert (c.dataset, c.model, c.momentum, c.weight_decay, c.batch_size) == \
                   ("cifar10", "preact-resnet18-b", 0.9, 5e-4, 128)
            assert (c.eps, c.step_size, c.attack_steps, c.seed, c.normalize, c.fidelity) == \
                   (8 / 255, 2 / 255, 10, 0, False, "paper")
            if run.key.endswith(f"/{HOT_START}"):  # the spec's default hot start, TRADES's schedule
                assert (c.method, c.hp_dict, c.init_from) == ("trades", {}, None)  # β = 6 is TRADES' default
                assert (c.epochs, c.schedule, c.milestones, c.lr) == (100, "piecewise", (75, 90), 0.1)
            else:  # FRL's and CAAT's code: 40 epochs at lr 0.001, the MultiStep never reached
                assert (c.epochs, c.schedule, c.lr, c.init_from is not None) == (40, "constant", 0.001, True)
    t1 = {r.key.split("/", 1)[1]: r.config for r in EXPERIMENTS.get("table1_caat").runs("paper")}
    assert t1["TRADES (1/λ = 1)"].hp_dict == {"beta": 1.0} and t1["TRADES (1/λ = 6)"].hp_dict == {}
    assert dict(t1["CAAT (Grad-Based)"].hp) == {"bound": "grad"}
    assert t1["CAAT (Grad-Based)"].hp_dict == {"bound": "grad", "meta_every": 1, "train_eps_scale": 1.0}
    assert t1["FRL (ReWeight)"].scenario.heldout == "frl_meta" and t1["CAAT (ReMargin)"].scenario.heldout == "caat_meta"
    assert t1[HOT_START].scenario.heldout == "frl_meta"  # FRL's hot start: its 4700-per-class split
    assert t1["CAAT (ReMargin)"].init_from == t1["PGD Adv. Training"].init_from == t1[HOT_START].run_id()
    assert all(c.scenario.imbalance == 1 and c.scenario.noise is None for c in t1.values())
    for run in EXPERIMENTS.get("table2_caat").runs("paper"):
        s = run.config.scenario
        assert (s.noise, s.noise_ratio, s.heldout, s.imbalance) == ("flip2", 0.2, "caat_meta", 1)
    for run in EXPERIMENTS.get("table3_caat").runs("paper"):
        s = run.config.scenario
        assert (s.imbalance, s.lt_profile, s.lt_order, s.heldout, s.noise) == (10, "exp", "ordered", "caat_meta", None)
    t4 = {r.key.split("/", 1)[1]: r.config for r in EXPERIMENTS.get("table4_caat").runs("paper")}
    assert dict(t4["Setting I"].hp) == {"direction": "adversarial", "bound": "fixed"}
    assert dict(t4["Setting II"].hp) == {"direction": "adversarial"}  # bound=remargin is the default
    assert dict(t4["Setting III"].hp) == {"bound": "fixed"}
    assert t4["Setting IV"] == t1["CAAT (ReMargin)"]  # one run serves both tables
    fig4 = FIGURES.get("fig4_caat").runs("paper")[-1].config
    assert (fig4.scenario.noise, fig4.scenario.noise_ratio, dict(fig4.hp)) == \
           ("uniform", 0.2, {"bound": "grad", "record_samples": True})
    fig5 = {r.config.scenario.imbalance for r in FIGURES.get("fig5_caat").runs("paper")}
    assert fig5 == {10, 100}


def test_fast_and_smoke_shorten_the_schedule_but_keep_the_methods():
    for name in TABLES:
        paper, fast, smoke = (EXPERIMENTS.get(name).runs(p) for p in ("paper", "fast", "smoke"))
        for p, f, s in zip(paper, fast, smoke):
            assert p.key == f.key == s.key
            assert (p.config.method, p.config.hp) == (f.config.method, f.config.hp) == (s.config.method, s.config.hp)
            assert f.config.model == p.config.model and f.config.schedule == p.config.schedule
            if p.key.endswith(f"/{HOT_START}"):
                assert f.config.epochs == 12 and max(f.config.milestones) < 12
            else:
                assert f.config.epochs == 5 and f.config.lr == p.config.lr
            assert (s.config.model, s.config.epochs, s.config.train_limit) == ("tiny-cnn", 1, 256)
            assert s.config.scenario.noise == p.config.scenario.noise


def test_claims_cover_the_tables_the_paper_makes_statements_about():  # judged in tests/test_claims.py
    claims = load_claims("caat")
    assert len(claims) >= 10 and {c.table for c in claims} == {"table1", "table2", "table3", "table4"}


# -- CAAT's recorded series (Figs. 3–4) -------------------------------------------------------------------------

class FixedChoice(nn.Module):
    """A stand-in weighting net: even rows anti-adversaries, odd rows adversaries."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, zeta):
        anti = (torch.arange(len(zeta)) % 2 == 0).float()
        return torch.stack([1 - anti, anti], 1)


def _ctx(run_dir=None):
    meta = Split(torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8), torch.arange(20) % C)
    return MethodContext(num_classes=C, eps=0.1, step_size=0.025, attack_steps=2, epochs=1, steps_per_epoch=1,
                         class_counts=(4,) * C, heldout={"meta": meta}, device=torch.device("cpu"), fidelity="paper",
                         new_model=None, run_dir=run_dir, batch_size=8)


def test_caat_records_the_share_of_adversaries_and_the_clean_loss_per_class(monkeypatch, tmp_path):
    flat = torch.full((C,), 0.1)
    monkeypatch.setattr(caat, "class_errors", lambda *a, **k: ClassErrors(flat, flat, 2 * flat, 0.1, 0.1, 0.2))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, C))
    method = build_method("caat", {"meta_every": "1000", "record_samples": "true"}, _ctx(str(tmp_path)))
    method.net = FixedChoice()
    x, y, idx = torch.rand(8, 1, 8, 8), torch.tensor([0, 0, 0, 0, 1, 1, 2, 2]), torch.tensor([3, 5, 7, 9, 11, 13, 15, 17])
    method.on_epoch_start(model, 0)
    method.loss(model, Batch(x, y, idx, 0, 0), torch.optim.SGD(model.parameters(), lr=0.1))
    record = method.on_epoch_end(model, 0, [None] * C)
    assert record["class_adv_ratio"][:3] == [0.5, 0.5, 0.5] and record["class_adv_ratio"][3:] == [None] * 7
    with torch.no_grad():
        ce = F.cross_entropy(model(x), y, reduction="none")
    for c in range(3):
        assert record["class_clean_loss"][c] == pytest.approx(float(ce[y == c].mean()), rel=1e-5)
    assert record["class_clean_loss"][3] is None and "class_loss" in record  # earlier keys kept
    with np.load(caat.samples_path(tmp_path, 0)) as z:
        adversary, eps = z["adversary"], z["eps"]
    assert adversary.shape == (40,) and adversary[idx.numpy()].tolist() == [0, 1] * 4
    assert (np.delete(adversary, idx.numpy()) == -1).all() and np.isnan(np.delete(eps, idx.numpy())).all()
    np.testing.assert_allclose(eps[idx.numpy()], method.class_eps[y].numpy(), rtol=1e-6)


def test_record_samples_needs_a_run_folder():
    with pytest.raises(ValueError, match="run folder"):
        build_method("caat", {"record_samples": "true"}, _ctx())


def test_group_series_splits_directions_and_bounds_by_noisy_labels(tmp_path):
    run = RunDir(tmp_path)
    run.extra("caat_samples").mkdir()
    adversary = np.array([1, 1, 0, 0, 1, -1], dtype=np.int8)
    eps = np.array([2, 4, 6, 8, 10, np.nan], dtype=np.float32) / 255
    np.savez(caat.samples_path(tmp_path, 0), adversary=adversary, eps=eps)
    noisy = np.array([False, False, False, True, True, True])
    series = caat_figures.group_series(run, noisy)
    assert series["epochs"] == [1]
    assert series["clean"]["adv_ratio"] == [pytest.approx(2 / 3)] and series["noisy"]["adv_ratio"] == [0.5]
    assert series["clean"]["adv_eps"] == [pytest.approx(3)] and series["clean"]["anti_eps"] == [pytest.approx(6)]
    assert series["noisy"]["adv_eps"] == [pytest.approx(10)] and series["noisy"]["anti_eps"] == [pytest.approx(8)]


# -- smoke runs ---------------------------------------------------------------------------------------------------

def train_with_hot_start(store, runs, run_key):
    """Train the hot start, then the planned run `run_key` fine-tuning it; returns that run's result."""
    planned = {r.key: r for r in runs}
    start = planned[key(run_key.split("/")[0], HOT_START)]
    train_run(start.config, store.run_dir(start.config), evaluation=start.evaluation, selection=start.selection)
    run = planned[run_key]
    return train_run(run.config, store.run_dir(run.config), evaluation=run.evaluation, selection=run.selection)


@pytest.fixture(scope="module")
def caat_smoke(tmp_path_factory):
    """Table 1's CAAT (ReMargin) smoke run (also Table 4's Setting IV and one of Fig. 3's runs), and its hot
    start."""
    store = RunStore(tmp_path_factory.mktemp("caat_runs"))
    runs = EXPERIMENTS.get("table1_caat").runs("smoke", SUBSTITUTE)
    result = train_with_hot_start(store, runs, "CIFAR-10/CAAT (ReMargin)")
    return store, result, store.run_dir(next(r.config for r in runs if r.key == "CIFAR-10/CAAT (ReMargin)"))


def test_a_smoke_run_fills_its_cells_in_percent_error(caat_smoke):
    store, result, _ = caat_smoke
    triple = result["checkpoints"]["last"]["error_triple"]
    table1 = collect(EXPERIMENTS.get("table1_caat"), store, "smoke", SUBSTITUTE).set_index(["row", "column"])
    cell = table1.loc[("CAAT (ReMargin)", "Worst Rob.")]
    assert cell["status"] == "done" and cell["published"] == 44.4 and cell["unit"] == "err%"
    assert cell["ours"] == pytest.approx(100 * triple["rob"]["worst"])
    assert table1.loc[("CAAT (ReMargin)", "Avg. Nat."), "ours"] == pytest.approx(100 * triple["nat"]["avg"])
    assert table1.loc[("PGD Adv. Training", "Avg. Rob."), "status"] == "not run"
    table4 = collect(EXPERIMENTS.get("table4_caat"), store, "smoke", SUBSTITUTE).set_index(["row", "column"])
    assert table4.loc[("Setting IV", "Avg. Bdy. (%)"), "ours"] == pytest.approx(100 * triple["bdy"]["avg"])
    assert math.isnan(table4.loc[("Setting I", "Avg. Bdy. (%)"), "ours"])


def _drawn(paths):
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_fig3_and_fig5_draw_from_a_smoke_run(caat_smoke, tmp_path):
    store, _, run = caat_smoke
    fig3 = FIGURES.get("fig3_caat")
    inputs = figure_input(fig3, store, "smoke", SUBSTITUTE)
    assert list(inputs.runs) == ["CIFAR-10/hot start", "CIFAR-10/CAAT (ReMargin)"]
    assert inputs.missing == ["CIFAR-10/CAAT (Grad-Based)"]
    assert len(run.records()[0]["class_adv_ratio"]) == C
    _drawn(fig3.draw(inputs, tmp_path / "fig3"))
    # Fig. 5 reads only stored evaluations: the smoke run stands in for one long-tailed run of each imbalance factor.
    stand_in = {key("CIFAR-10 LT IF=10", "CAAT (ReMargin)"): [run], key("CIFAR-10 LT IF=100", "PGD Adv. Training"): [run]}
    planned = next(r for r in EXPERIMENTS.get("table1_caat").runs("smoke", SUBSTITUTE) if r.key == "CIFAR-10/CAAT (ReMargin)")
    inputs = FigureInput("smoke", stand_in, ["…"], {run.path.name: planned})
    assert "error_triple" in inputs.evaluations(run).checkpoint("last")
    _drawn(FIGURES.get("fig5_caat").draw(inputs, tmp_path / "fig5"))


def test_fig4_draws_clean_and_noisy_series_from_its_smoke_run(tmp_path):
    figure = FIGURES.get("fig4_caat")
    store = RunStore(tmp_path / "runs")
    runs = figure.runs("smoke", SUBSTITUTE)
    train_with_hot_start(store, runs, key("CIFAR-10 20% uniform noise", "CAAT (Grad-Based)"))
    run = store.run_dir(runs[-1].config)
    noisy = caat_figures.noisy_mask(run)
    assert noisy.shape == (256,) and 0.05 < noisy.mean() < 0.35  # 20% uniform noise flips ~18% of labels
    _drawn(figure.draw(figure_input(figure, store, "smoke", SUBSTITUTE), tmp_path / "fig4"))
    series = json.loads(run.extra("caat_fig4_series").read_text())
    assert series["epochs"] == [1]
    ratios = [series[g]["adv_ratio"][0] for g in ("clean", "noisy")]
    assert all(0 <= r <= 1 for r in ratios)


@pytest.mark.parametrize("name", ["fig3_caat", "fig4_caat", "fig5_caat"])
def test_figures_draw_with_every_run_missing(name, tmp_path):
    figure = FIGURES.get(name)
    inputs = figure_input(figure, RunStore(tmp_path / "runs"), "smoke", SUBSTITUTE)
    assert not inputs.runs and len(inputs.missing) == EXPECTED_RUNS[name]
    _drawn(figure.draw(inputs, tmp_path / name))
