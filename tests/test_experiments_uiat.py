"""UIAT's tables and figures: the paper's grids per profile, its settings in the paper profile, runs shared
between tables, and cells and figures filled from smoke runs trained on a tiny CIFAR-10-shaped data set."""
import json
import math
from pathlib import Path

import pytest
from cifar_subset import real_cifar10_jpeg, write_subset

from bench.experiments import PROFILES
from bench.papers import EXPERIMENTS, FIGURES
from bench.papers.uiat import figures as uiat_figures
from bench.experiments.figures import draw
from bench.experiments.render import collect
from bench.published import load_published
from bench.store import RunStore
from bench.selection import Best
from bench.train import train_run
from methods.inverse.universal_inverse import reference_start

TABLES = [f"table{n}_uiat" for n in range(1, 7)]
FIGURE_IDS = [f"fig{n}_uiat" for n in (1, 2, 3, 4, 5, 7)]
SUBSTITUTE = {"cifar10": "cifar10-jpeg"}
# (planned runs, runnable runs), from the paper's grids:
EXPECTED = {
    "table1_uiat": (3 * (6 + 1), 3 * (6 + 1)),  # 3 data sets × 6 methods + one HAT helper each
    "table2_uiat": (3 * (5 + 1), 3 * (5 + 1)),  # 3 networks × 5 AT methods + natural (= HAT's helper)
    "table3_uiat": (3 * 4 + 1, 3 * 4 + 1),  # 3 radii × 4 methods + one helper
    "table4_uiat": (2 * 2 * 4, 0),  # extra DDPM data: not runnable
    "table5_uiat": (3 * 6, 3 * 6),  # 3 radii × 3 single-step methods ± UIAT
    "table6_uiat": (5, 5),
    "fig1_uiat": (2, 2), "fig2_uiat": (2, 2), "fig3_uiat": (6, 6), "fig4_uiat": (2, 2), "fig5_uiat": (2, 2),
    "fig7_uiat": (4 * 5, 4 * 5),
}


def _artifact(name):
    return EXPERIMENTS.get(name) if name in EXPERIMENTS else FIGURES.get(name)


def _by_key(name, profile="paper"):
    return {run.key: run for run in _artifact(name).runs(profile)}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_id_plans_the_papers_grid(profile):
    for name, (total, runnable) in EXPECTED.items():
        runs = _artifact(name).runs(profile)
        assert (len(runs), sum(r.config is not None for r in runs)) == (total, runnable), name
        assert len({r.key for r in runs}) == total, name
    assert all("DDPM" in r.why or "Rebuffi" in r.why for r in EXPERIMENTS.get("table4_uiat").runs(profile))


def test_cells_match_the_published_layout_and_read_what_their_runs_measure():
    published = load_published("uiat")
    for name in TABLES:
        experiment = EXPERIMENTS.get(name)
        cells = experiment.cells()
        table = published[published["table"] == experiment.table]
        assert {(c.row, c.column) for c in cells} == set(zip(table["row"], table["column"]))
        for profile in PROFILES:
            runs = _by_key(name, profile)
            for cell in cells:
                run = runs[cell.run]
                if run.config is not None and cell.stat == "acc":
                    assert cell.attack in run.evaluation.attacks, (name, cell)


def test_paper_profile_carries_the_papers_settings():
    t1 = _by_key("table1_uiat")
    uiat = t1["CIFAR-10/ResNet-18/UIAT"].config
    assert (uiat.model, uiat.epochs, uiat.schedule, uiat.nesterov, uiat.lr, uiat.weight_decay) == \
        ("resnet18", 100, "onecycle", True, 0.1, 5e-4)
    assert math.isclose(uiat.eps, 8 / 255) and math.isclose(uiat.step_size, 2 / 255)
    assert uiat.attack_steps == 10 and uiat.seed == 0 and uiat.hp == ()
    planned = t1["CIFAR-10/ResNet-18/UIAT"]
    assert set(planned.evaluation.attacks) == {"clean", "pgd20", "cw", "aa"} and planned.evaluation.aa_n is None
    assert planned.selection.spec() == "best"  # HAT's code: best PGD-20 on test; the cells read `last`
    assert t1["CIFAR-10/ResNet-18/helper"].selection.spec() == "best:attack=clean"  # HAT §4.1's helper
    svhn = t1["SVHN/ResNet-18/UIAT (One-off)"].config
    assert svhn.epochs == 30 and math.isclose(svhn.step_size, 1 / 255) and dict(svhn.hp) == {"lam": 3.0}
    assert math.isclose(svhn.eval_step_size, 2 / 255) and uiat.eval_step_size is None  # PGD-20 step 2/255 (§4.2)
    assert dict(t1["CIFAR-10/ResNet-18/MART"].config.hp) == {"beta": 5.0}
    helper, hat = t1["CIFAR-100/ResNet-18/helper"], t1["CIFAR-100/ResNet-18/HAT"]
    assert (helper.config.method, helper.config.epochs, helper.selection) == ("natural", 50, Best(attack="clean"))
    assert dict(hat.config.hp) == {"helper": helper.config.run_id()} and hat.needs == (helper.config.run_id(),)
    uiat16 = _by_key("table3_uiat")["eps=16/255/UIAT"].config  # ε′ = α′ = 4/255 at every ε
    assert math.isclose(uiat16.eps, 16 / 255)
    assert dict(uiat16.hp) == {"inv_eps_ratio": 0.25, "universal_step_ratio": 0.25, "instance_step_ratio": 0.125}
    t5 = _by_key("table5_uiat")
    nfgsm = t5["eps=6/255/N-FGSM + UIAT"].config
    assert (nfgsm.method, nfgsm.model, nfgsm.epochs, nfgsm.schedule, nfgsm.lr, nfgsm.nesterov) == \
        ("nfgsm+uiat", "preact-resnet18", 30, "cyclic", 0.2, False)
    assert math.isclose(nfgsm.eps, 6 / 255) and dict(nfgsm.hp)["uiat.inv_eps_ratio"] == 4 / 6
    assert t5["eps=10/255/GradAlign"].config.lr == 0.3 and not t5["eps=10/255/GradAlign"].config.normalize
    ablation = _by_key("table6_uiat")
    assert dict(ablation["1 (none)"].config.hp) == {"beta": 0.0, "momentum": False, "universal": False}
    assert dict(ablation["4 (UAG+IAM)"].config.hp) == {"beta": 0.0}
    assert _by_key("table2_uiat")["CIFAR-10/WRN-34/UIAT"].config.model == "wrn-34-10"
    assert _by_key("fig2_uiat")["SAT"].config.epochs == 200


def _run_id(name, key, profile="paper"):
    return _by_key(name, profile)[key].config.run_id()


@pytest.mark.parametrize("profile", PROFILES)
def test_the_same_setting_is_one_run_across_tables_and_figures(profile):
    uiat = _run_id("table1_uiat", "CIFAR-10/ResNet-18/UIAT", profile)
    assert _run_id("table2_uiat", "CIFAR-10/ResNet-18/UIAT", profile) == uiat
    assert _run_id("table6_uiat", "5 (UAG+FR+IAM)", profile) == uiat
    assert _run_id("fig4_uiat", "UIAT", profile) == uiat == _run_id("fig7_uiat", "beta=1", profile)
    oneoff = _run_id("table1_uiat", "CIFAR-10/ResNet-18/UIAT (One-off)", profile)
    assert _run_id("fig3_uiat", "lam=3.5", profile) == oneoff == _run_id("fig7_uiat", "start_fraction=0.8", profile)
    helper = _run_id("table1_uiat", "CIFAR-10/ResNet-18/helper", profile)
    assert _run_id("table3_uiat", "CIFAR-10/ResNet-18/helper", profile) == helper
    assert _run_id("fig1_uiat", "natural", profile) == helper
    assert _run_id("fig5_uiat", "TRADES", profile) == _run_id("table1_uiat", "CIFAR-10/ResNet-18/TRADES", profile)


def test_fast_profile_is_short_but_keeps_every_schedule_inside_training():
    for name in EXPECTED:
        for run in _artifact(name).runs("fast"):
            if run.config is None:
                continue
            cfg, paper = run.config, _by_key(name)[run.key].config
            assert cfg.epochs <= 0.15 * paper.epochs or cfg.epochs <= 6, (name, run.key)
            without_helper = [[pair for pair in c.hp if pair[0] != "helper"] for c in (cfg, paper)]
            assert run.evaluation is None or run.evaluation.aa_n == 1000, run.key  # figures from records: None
            assert cfg.model == paper.model, run.key
            assert without_helper[0] == without_helper[1], run.key
            hp = {"momentum_start": "0.75", "start_fraction": "0.8", "uiat.start_fraction": "0.8", **dict(cfg.hp)}
            if cfg.method == "uiat":  # the momentum start T
                assert reference_start(float(hp["momentum_start"]), cfg.epochs, "T") < cfg.epochs, (name, run.key)
            if cfg.method in ("uiat_oneoff", "nfgsm+uiat", "rs_fgsm+uiat", "gradalign+uiat"):  # the one-off epoch T′
                fraction = hp["start_fraction" if cfg.method == "uiat_oneoff" else "uiat.start_fraction"]
                assert reference_start(float(fraction), cfg.epochs, "T'") < cfg.epochs, (name, run.key)


# ---- smoke runs on a tiny CIFAR-10-shaped data set -------------------------------------------------------------

SMOKE_KEYS = ["CIFAR-10/ResNet-18/helper", "CIFAR-10/ResNet-18/SAT", "CIFAR-10/ResNet-18/TRADES",
              "CIFAR-10/ResNet-18/UIAT", "CIFAR-10/ResNet-18/UIAT (One-off)"]


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """Table 1's CIFAR-10 smoke runs (those the figures read), on 320 training / 100 test images of cifar10-jpeg."""
    data = tmp_path_factory.mktemp("cifar10-jpeg")
    source = real_cifar10_jpeg()
    write_subset(source / "train.npz", data / "train.npz", 32)
    write_subset(source / "test.npz", data / "test.npz", 10)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENCH_CIFAR10_JPEG", str(data))
        env.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        store = RunStore(tmp_path_factory.mktemp("runs"))
        runs = _by_key_substituted("table1_uiat")
        results = {key: train_run(runs[key].config, store.run_dir(runs[key].config), evaluation=runs[key].evaluation,
                                  selection=runs[key].selection) for key in SMOKE_KEYS}
        yield store, results


def _by_key_substituted(name):
    return {run.key: run for run in _artifact(name).runs("smoke", SUBSTITUTE)}


def test_a_smoke_run_fills_its_cells_in_the_published_units(smoke_store):
    store, results = smoke_store
    cells = collect(EXPERIMENTS.get("table1_uiat"), store, "smoke", SUBSTITUTE).set_index(["row", "column"])
    cw = cells.loc[("SAT", "CIFAR-10 / CW")]
    assert cw["status"] == "done" and cw["published"] == 50.17
    sat = results["CIFAR-10/ResNet-18/SAT"]["checkpoints"]["last"]["attacks"]
    assert cw["ours"] == pytest.approx(100 * sat["cw"]["acc"])
    assert cells.loc[("MART", "CIFAR-10 / AA"), "status"] == "not run"
    timing = collect(EXPERIMENTS.get("table2_uiat"), store, "smoke", SUBSTITUTE).set_index(["row", "column"])
    run = store.run_dir(_by_key_substituted("table2_uiat")["CIFAR-10/ResNet-18/TRADES"].config)
    seconds = [r["train_seconds"] for r in run.records()]
    assert timing.loc[("TRADES", "ResNet-18"), "ours"] == pytest.approx(sum(seconds) / len(seconds) / 60)


@pytest.mark.parametrize("name", FIGURE_IDS)
def test_each_figure_draws_from_smoke_runs(name, smoke_store, tmp_path):
    store, _ = smoke_store
    trained = {path.name for path in store.root.iterdir()}
    planned = FIGURES.get(name).runs("smoke", SUBSTITUTE)
    paths, missing = draw(FIGURES.get(name), str(store.root), "smoke", tmp_path, SUBSTITUTE)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert set(missing) == {run.key for run in planned if run.config.run_id() not in trained}


def test_strength_sweeps_are_cached_in_the_run_folder(smoke_store, tmp_path, monkeypatch):
    """Fig. 1's halves partition the sweep's images, and a redraw reads the cache instead of attacking again."""
    store, _ = smoke_store
    figure = FIGURES.get("fig1_uiat")
    draw(figure, str(store.root), "smoke", tmp_path, SUBSTITUTE)
    sat = store.run_dir(_by_key_substituted("table1_uiat")["CIFAR-10/ResNet-18/SAT"].config)
    cache = json.loads((sat.path / "uiat_pgd20_strength.json").read_text())
    assert cache["images"] == 64 and set(cache["by_strength_255"]) == {str(s) for s in uiat_figures.STRENGTHS_255}
    for curve in cache["by_strength_255"].values():
        assert curve["all"] == pytest.approx((curve["top"] + curve["bottom"]) / 2)
        assert all(0 <= acc <= 1 for acc in curve.values())
    monkeypatch.setattr(uiat_figures, "pgd", lambda *a, **k: pytest.fail("the cached sweep was recomputed"))
    draw(figure, str(store.root), "smoke", tmp_path, SUBSTITUTE)
