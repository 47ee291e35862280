"""BiLAW's tables and figures: the planned grids follow the paper's recipe, cells sit where the paper prints them,
claims cover the tables, the BiLAW methods record the weight statistics the figures read, and
smoke runs fill cells and figures."""
import dataclasses
import math

import pytest
import torch
from short_test_set import short_test_set
from torch import nn

from bench.data import Split, load_dataset
from bench.experiments.claims import load_claims
from bench.experiments.figures import draw
from bench.experiments.render import collect
from bench.papers import EXPERIMENTS, FIGURES, lookup
from bench.papers.bilaw import figures as bilaw_figures
from bench.published import load_published
from bench.store import RunStore
from bench.selection import Best
from bench.train import train_run
from methods import MethodContext, build_method, resolved_hparams
from methods.core.base import Batch
from methods.bilaw.bilaw_weight_log import QUANTILES, TRACKED, EpochWeights

TABLES = ("table1_bilaw", "table2_bilaw", "table3_bilaw", "table6_bilaw", "table7_bilaw", "table8_bilaw")
FIGURE_IDS = ("fig3_bilaw", "fig5_bilaw", "fig6_bilaw")
# Runs per table from the paper's grids: Table 1 = 6 methods × 2 datasets × 2 models × 2 norms; Table 2 = 8 methods
# × 2 models × 2 ε; Table 3 = 7 methods; the ablations 4 rows each; every run runnable. Smoke trains tiny-cnn for
# both Table 2 models, so their configs coincide.
GRIDS = {"table1_bilaw": 48, "table2_bilaw": 32, "table3_bilaw": 7, "table6_bilaw": 4, "table7_bilaw": 4,
         "table8_bilaw": 4}
SMOKE_DISTINCT = {"table2_bilaw": 16}
SUBS = {"cifar10": "fmnist"}  # CIFAR-10 is absent here; smoke runs use tiny-cnn, which takes any image shape
WRN_031 = "CIFAR-10/WRN-10-32/ε = 0.031/"


def _runs(artifact_id, profile="paper", subs=None):
    return lookup(artifact_id).runs(profile, subs)


def _config(artifact_id, key, profile="paper"):
    return next(r.config for r in _runs(artifact_id, profile) if r.key == key)


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_each_table_plans_the_papers_grid(profile):
    for table_id, count in GRIDS.items():
        runs = _runs(table_id, profile)
        assert len(runs) == count and all(r.config is not None for r in runs), table_id
        assert len({r.key for r in runs}) == count
        distinct = SMOKE_DISTINCT.get(table_id, count) if profile == "smoke" else count
        assert len({r.config.run_id() for r in runs}) == distinct, table_id
    for figure_id in FIGURE_IDS:
        assert _runs(figure_id, profile) == _runs("fig3_bilaw", profile)  # one BiLAW run behind all three


def test_table1_keeps_the_identity_of_runs_already_trained():
    """Pinned ids; BiLAW's and MAIL's changed with issue 12's canonical identity (BiLAW's placeholders
    val_attack_steps=-1 and meta_weight_decay=None are hashed resolved; MAIL's hp typed: bias 0.05, not "0.05")."""
    ids = {r.config.run_id() for r in _runs("table1_bilaw", "fast") if r.config is not None}
    # Ids since evaluation and selection left the run config (the BiLAW row also monitors val_stop now) and
    # hyperparameters are hashed typed and resolved.
    assert {"bilaw_fmnist_tiny-cnn_s0-da90cc73b9", "mail_at_fmnist_tiny-cnn_s0-14ca95b50c",
            "natural_fmnist_fc1_s0-5aafc2072c", "wmmr_fmnist_tiny-cnn_s0-0704b64f42"} <= ids


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_table1_l2_columns_train_and_test_in_the_l2_ball_of_radius_0_3(profile):
    """Each ℓ2 run is its ℓ∞ twin with norm l2, ε = 0.3 and step ε/4; the ℓ∞ runs keep norm out of their identity."""
    runs = {r.key: r.config for r in _runs("table1_bilaw", profile)}
    linf = {key: cfg for key, cfg in runs.items() if "/linf/" in key}
    assert len(linf) == 24
    for key, cfg in linf.items():
        assert (cfg.norm, cfg.eps, cfg.step_size) == ("linf", 0.1, 0.025) and "norm" not in cfg.overrides()
        l2 = runs[key.replace("/linf/", "/l2/")]
        assert l2 == dataclasses.replace(cfg, norm="l2", eps=0.3, step_size=0.3 / 4), key


@pytest.mark.parametrize("profile", ["paper", "fast", "smoke"])
def test_cells_sit_where_the_paper_prints_them_and_read_what_their_runs_evaluate(profile):
    published = load_published("bilaw")
    for table_id in TABLES:
        experiment = EXPERIMENTS.get(table_id)
        table = published[published["table"] == experiment.table]
        assert {(c.row, c.column) for c in experiment.cells()} == set(zip(table["row"], table["column"]))
        runs = {r.key: r for r in experiment.runs(profile)}
        read = {key: set() for key in runs}
        for cell in experiment.cells():
            run = runs[cell.run]
            if run.config is not None:
                needed = {cell.attack, "clean"} if cell.stat == "gap" else {cell.attack}
                assert needed <= set(run.evaluation.attacks), (table_id, cell)
                read[cell.run].add(cell.checkpoint)
        for key, run in runs.items():  # each run evaluated at the checkpoints its cells read, no other (AA is costly)
            if run.config is not None:
                assert set(run.evaluation.checkpoints) == read[key], (table_id, key)
    gaps = [c for c in EXPERIMENTS.get("table6_bilaw").cells() if c.stat == "gap"]
    assert {c.column for c in gaps} == {"CIFAR10 / PGD - Clean"} and {c.attack for c in gaps} == {"pgd20"}


def test_paper_profile_carries_the_papers_recipe():
    bilaw = _config("table2_bilaw", WRN_031 + "BiLAW (ours)")
    assert (bilaw.epochs, bilaw.milestones, bilaw.lr, bilaw.momentum, bilaw.weight_decay, bilaw.batch_size) == (
        100, (30, 60), 0.1, 0.9, 2e-4, 128)
    assert (bilaw.model, bilaw.dataset, bilaw.eps, bilaw.step_size, bilaw.attack_steps) == (
        "wrn-32-10", "cifar10", 0.031, 0.031 / 4, 10)
    assert (bilaw.eval_n, bilaw.seed, bilaw.monitor_on) == (1000, 0, ("val_stop",))
    assert bilaw.scenario.heldout == "bilaw"
    planned = next(r for r in _runs("table2_bilaw") if r.key == WRN_031 + "BiLAW (ours)")
    assert planned.selection == Best("pgd20", on="val_stop")  # §4.1: early stopping on validation set #2
    assert (planned.evaluation.attacks, planned.evaluation.aa_n) == (("clean", "pgd20", "aa"), 1000)
    at = next(r for r in _runs("table2_bilaw") if r.key == WRN_031 + "AT")
    assert at.selection == Best("pgd20", on="test") and at.config.monitor_on == ("test",)
    small = _config("table2_bilaw", "CIFAR-10/Small-CNN/ε = 0.0078/AT")
    assert (small.model, small.eps, small.step_size, small.scenario.heldout) == ("small-cnn", 0.0078, 0.0078 / 4, None)
    assert resolved_hparams("trades", _config("table2_bilaw", WRN_031 + "TRADES (1/λ = 6)").hp_dict)["beta"] == 6
    assert _config("table2_bilaw", WRN_031 + "Non-parametric weighting").method == "bilaw_np"
    for beta in (1, 6):
        trades = _config("table3_bilaw", f"CIFAR-100/WRN-32-10/ε = 0.031/TRADES (1/λ = {beta})")
        assert resolved_hparams("trades", trades.hp_dict)["beta"] == beta
    cifar100 = _config("table3_bilaw", "CIFAR-100/WRN-32-10/ε = 0.031/BiLAW-TRADES (ours)")
    assert (cifar100.dataset, cifar100.model, cifar100.method) == ("cifar100", "wrn-32-10", "bilaw_trades")
    fast, smoke = _config("table2_bilaw", WRN_031 + "AT", "fast"), _config("table2_bilaw", WRN_031 + "AT", "smoke")
    assert (fast.epochs, fast.milestones, fast.model) == (10, (3, 6), "wrn-32-10")
    assert (smoke.model, smoke.epochs, smoke.train_limit, smoke.attack_steps) == ("tiny-cnn", 1, 256, 2)
    assert smoke.eps == 0.031  # the paper's budget at every size


@pytest.mark.parametrize("profile", ["paper", "smoke"])
def test_ablations_change_one_hyperparameter_of_table2s_bilaw_trades_run(profile):
    reference = _config("table2_bilaw", WRN_031 + "BiLAW-TRADES (ours)", profile)
    changed = {"table6_bilaw": ("hidden", ["64", "64-64", "256"]), "table7_bilaw": ("beta", [1.0, 5.0, 10.0]),
               "table8_bilaw": ("weight_input", ["margin", "robust_loss", "loss_gap"])}
    for table_id, (name, values) in changed.items():
        runs = _runs(table_id, profile)
        assert runs[0].config == reference
        for run, value in zip(runs[1:], values):
            assert run.config.hp == ((name, value),) and run.evaluation.attacks == ("clean", "pgd20")
            resolved_hparams("bilaw_trades", run.config.hp_dict)  # a value the method accepts
            assert run.config.scenario == reference.scenario and run.config.model == reference.model


def test_claims_cover_the_tables_the_paper_makes_statements_about():  # judged in tests/test_claims.py
    claims = load_claims("bilaw")
    assert len(claims) >= 10
    assert {c.table for c in claims} == {"table1", "table2", "table3", "table6", "table7", "table8"}


# -- what the BiLAW methods record ---------------------------------------------------------------------------

def test_epoch_weights_give_per_class_quantiles_of_the_weights_relative_to_uniform():
    log = EpochWeights(train_size=10, num_classes=3, device=torch.device("cpu"))
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])  # a batch of 4: relative weights 0.4, 0.8, 1.2, 1.6
    log.add(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1]), w)
    log.add(torch.tensor([4, 5]), torch.tensor([0, 1]), torch.tensor([0.5, 0.5]))  # relative 1, 1
    per_class = log.summary()["weight_quantiles"]["per_class"]
    q = torch.tensor(QUANTILES)
    assert per_class[0] == pytest.approx(torch.quantile(torch.tensor([0.4, 0.8, 1.0]), q).tolist())
    assert per_class[1] == pytest.approx(torch.quantile(torch.tensor([1.2, 1.6, 1.0]), q).tolist())
    assert per_class[2] is None  # no sample of class 2 this epoch
    log.reset()
    assert log.summary()["weight_quantiles"]["per_class"] == [None, None, None]


def _tiny_context(train_size=40):
    g = torch.Generator().manual_seed(0)
    val = Split(torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8, generator=g),
                torch.randint(0, 3, (16,), generator=g))
    return MethodContext(num_classes=3, eps=0.1, step_size=0.025, attack_steps=2, epochs=2, steps_per_epoch=5,
                         class_counts=(train_size - 2 * (train_size // 3), train_size // 3, train_size // 3),
                         heldout={"val_meta": val}, device=torch.device("cpu"), fidelity="paper",
                         new_model=lambda: None, batch_size=8, seed=0)


def _tiny_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))


@pytest.mark.parametrize("name", ["bilaw", "bilaw_trades", "bilaw_np"])
def test_an_epoch_records_weight_quantiles_and_tracked_weights_without_touching_the_training(name):
    torch.manual_seed(0)
    method, model = build_method(name, {}, _tiny_context()), _tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(40, 1, 4, 4), torch.randint(0, 3, (40,))
    method.on_epoch_start(model, 0)
    model.train()
    for step, idx in enumerate(torch.randperm(40).split(8)):
        out = method.loss(model, Batch(x[idx], y[idx], idx, 0, step), optimizer)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    rng, state = torch.get_rng_state(), {k: v.clone() for k, v in model.state_dict().items()}
    record = method.on_epoch_end(model, 0, [0.0] * 3)
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN statistics included
    quantiles = record["weight_quantiles"]
    assert quantiles["q"] == list(QUANTILES) and len(quantiles["per_class"]) == 3
    for values in quantiles["per_class"]:
        assert values == sorted(values) and values[0] >= 0
    if name == "bilaw_np":
        assert "weight_tracked" not in record
        return
    tracked = record["weight_tracked"]
    assert tracked["idx"] == list(range(TRACKED)) and len(tracked["clean"]) == len(tracked["adv"]) == TRACKED
    assert all(0 < v < 1 for v in tracked["clean"] + tracked["adv"])  # ω_μ's raw sigmoid outputs
    assert tracked["clean"] != tracked["adv"]


# -- smoke runs ----------------------------------------------------------------------------------------------

SMOKE_KEYS = ("CIFAR-10/Small-CNN/ε = 0.031/BiLAW (ours)", "CIFAR-10/Small-CNN/ε = 0.031/BiLAW-TRADES (ours)")
TEST_IMAGES = 512


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """Table 2's BiLAW (the figures' source) and BiLAW-TRADES (Tables 6–8's reference) smoke runs on
    Fashion-MNIST; the training loop sees the first 512 test images only, so the final evaluation takes seconds."""
    store = RunStore(tmp_path_factory.mktemp("bilaw_runs"))
    planned = {r.key: r for r in _runs("table2_bilaw", "smoke", SUBS)}

    with short_test_set(TEST_IMAGES):
        results = {key: train_run(planned[key].config, store.run_dir(planned[key].config),
                                  evaluation=planned[key].evaluation, selection=planned[key].selection)
                   for key in SMOKE_KEYS}
    return store, {key: store.run_dir(planned[key].config) for key in SMOKE_KEYS}, results


def test_smoke_runs_fill_their_cells_in_the_published_unit(smoke_store):
    store, _, results = smoke_store
    cells = collect(EXPERIMENTS.get("table2_bilaw"), store, "smoke", SUBS).set_index(["row", "column"])
    pgd = results[SMOKE_KEYS[0]]["checkpoints"]["best"]["attacks"]["pgd20"]["acc"]
    for model in ("Small-CNN", "WRN-10-32"):  # one tiny-cnn run serves both columns at smoke size
        cell = cells.loc[("CIFAR-10 / BiLAW (ours)", f"{model} / perturbation: ℓ∞ / ε = 0.031 / PGD")]
        assert cell["status"] == "done" and cell["ours"] == pytest.approx(100 * pgd)
    assert cells.loc[("CIFAR-10 / BiLAW (ours)", "Small-CNN / perturbation: ℓ∞ / ε = 0.031 / PGD"), "published"] == 55.4
    assert cells.loc[("CIFAR-10 / AT", "Small-CNN / perturbation: ℓ∞ / ε = 0.031 / AA"), "status"] == "not run"
    table6 = collect(EXPERIMENTS.get("table6_bilaw"), store, "smoke", SUBS).set_index(["row", "column"])
    attacks = results[SMOKE_KEYS[1]]["checkpoints"]["best"]["attacks"]
    gap = table6.loc[("128 hidden units", "CIFAR10 / PGD - Clean")]
    assert gap["published"] == 27.2  # printed under "PGD - Clean", valued clean − PGD
    assert gap["ours"] == pytest.approx(100 * (attacks["clean"]["acc"] - attacks["pgd20"]["acc"]))
    assert table6.loc[("64", "CIFAR10 / PGD"), "status"] == "not run"


def test_every_figure_draws_from_the_smoke_run_and_from_nothing(smoke_store, tmp_path, monkeypatch):
    store, runs, _ = smoke_store
    for figure_id in FIGURE_IDS:
        for runs_dir in (store.root, tmp_path / "empty"):
            paths, missing = draw(FIGURES.get(figure_id), str(runs_dir), "smoke", tmp_path / runs_dir.name, SUBS)
            assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
            assert missing == ([] if runs_dir == store.root else [SMOKE_KEYS[0]])
    probe = bilaw_figures.weight_probe(runs[SMOKE_KEYS[0]])  # cached by the first drawing
    _, test = load_dataset("fmnist")
    assert probe["n"] == 64 and probe["labels"] == test.y[:64].tolist()  # the run's eval_n first test images
    for weights in probe["weights"].values():
        assert len(weights) == 64 and math.isclose(sum(weights) / 64, 1.0, rel_tol=1e-4)
    monkeypatch.setattr(bilaw_figures, "_compute_probe", lambda run: pytest.fail("the probe was not cached"))
    draw(FIGURES.get("fig6_bilaw"), str(store.root), "smoke", tmp_path / "again", SUBS)
