"""Experiments: every table and figure plans its grid in every profile, tables render from stored runs only,
and a committed fixture store renders to the committed golden table (tests/fixtures/golden)."""
import math
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import RunConfig
from bench.experiments import PROFILES, PlannedRun
from bench.experiments.base import substitute
from bench.experiments.grid import select, states
from bench.experiments.render import collect, to_markdown
from bench.papers import EXPERIMENTS, FIGURES, lookup
from bench.published import load_published
from bench.store import RunStore
from bench.train import train_run

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
ALL_IDS = [*EXPERIMENTS, *FIGURES]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_plans_its_grid(profile):
    bilaw = EXPERIMENTS.get("table1_bilaw").runs(profile)
    assert len(bilaw) == 48 and all(run.config is not None for run in bilaw)  # ℓ∞ and ℓ2 halves both runnable
    assert sum(run.config.norm == "l2" for run in bilaw) == 24
    for name in ALL_IDS:
        artifact = lookup(name)
        runs = artifact.runs(profile)
        settings = [(run.key, None if run.config is None else run.config.seed) for run in runs]
        assert len(settings) == len(set(settings)), f"{name}: a key repeats without a new seed"
        if name in EXPERIMENTS:
            assert {cell.run for cell in artifact.cells()} <= {run.key for run in runs}


def test_cells_match_the_published_layout_exactly():
    for name in EXPERIMENTS:
        experiment = EXPERIMENTS.get(name)
        published = load_published(experiment.paper)
        published = published[published["table"] == experiment.table]
        ours = {(c.row, c.column) for c in experiment.cells()}
        assert ours == set(zip(published["row"], published["column"])), name


def test_every_table_and_figure_of_the_four_papers_is_declared():
    tables = {"caat": (1, 2, 3, 4), "cfa": (1, 2, 3, 4), "uiat": (1, 2, 3, 4, 5, 6), "bilaw": (1, 2, 3, 6, 7, 8)}
    figures = {"caat": (1, 3, 4, 5), "cfa": (1, 2, 3, 4, 5, 6, 7), "uiat": (1, 2, 3, 4, 5, 7), "bilaw": (3, 5, 6)}
    assert set(EXPERIMENTS) == {f"table{n}_{p}" for p, ns in tables.items() for n in ns}
    assert set(FIGURES) == {f"fig{n}_{p}" for p, ns in figures.items() for n in ns}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", ALL_IDS)
def test_dry_run_lists_every_planned_run(name, profile, tmp_path, capsys):
    assert main(["run", name, "--profile", profile, "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    expected = len(states(lookup(name).runs(profile), RunStore(tmp_path)))  # distinct runs + unrunnable keys
    assert f"{name} [{profile}]: {expected} runs;" in out
    assert "estimated cost" in out


def test_a_table_renders_from_stored_runs_with_published_numbers_and_missing_marks(tmp_path):
    experiment = EXPERIMENTS.get("table1_bilaw")
    store = RunStore(tmp_path)
    at = next(run for run in experiment.runs("smoke") if run.key == "F-MNIST/Tiny-CNN/linf/AT")
    result = train_run(at.config, store.run_dir(at.config), evaluation=at.evaluation, selection=at.selection)
    cells = collect(experiment, store, "smoke").set_index(["row", "column"])
    cell = cells.loc[("F-MNIST / AT", "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / PGD")]
    assert cell["status"] == "done" and cell["published"] == 70.1 and cell["seeds"] == 1
    assert cell["ours"] == pytest.approx(100 * result["checkpoints"]["best"]["attacks"]["pgd20"]["acc"])
    assert cell["diff"] == pytest.approx(cell["ours"] - 70.1)
    assert cells.loc[("F-MNIST / plain", "FC1 / perturbation: ℓ∞ / ε = 0.1 / AA"), "status"] == "not run"
    l2 = cells.loc[("F-MNIST / AT", "Tiny-CNN / perturbation: ℓ2 / ε = 0.3 / AA")]
    assert l2["status"] == "not run" and math.isnan(l2["ours"])  # runnable now, just not trained here
    text = to_markdown(experiment, cells.reset_index(), "smoke")
    assert f"{cell['ours']:.1f} (70.1, {cell['ours'] - 70.1:+.1f})" in text
    assert "Profile `smoke`; 3 of 144 cells measured" in text
    assert "not runnable" not in text


def test_seeds_of_one_setting_show_mean_and_std(tmp_path):
    from bench.config import RunConfig
    from bench.eval_store import Evaluation
    from bench.experiments.base import Cell, Experiment, PlannedRun
    from bench.selection import Best

    column = "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / Clean"
    tiny = dict(method="natural", train_limit=128, epochs=1, attack_steps=1, eval_attacks=("clean",), eval_n=32)
    plan = [PlannedRun("plain", RunConfig(seed=seed, **tiny)) for seed in (0, 1, 2)]
    evaluation, rule = Evaluation(("clean",), n=64), Best(attack="clean")
    experiment = Experiment("t", "bilaw", "table1", "t", lambda profile: plan,
                            lambda: [Cell("F-MNIST / plain", column, "plain", attack="clean")],
                            evaluation=lambda profile, run: evaluation, selection=lambda run: rule)
    store = RunStore(tmp_path)
    accs = [100 * train_run(run.config, store.run_dir(run.config), evaluation=evaluation, selection=rule)
            ["checkpoints"]["best"]["attacks"]["clean"]["acc"] for run in plan[:2]]
    cell = collect(experiment, store, "smoke").iloc[0]
    assert cell["seeds"] == 2 and cell["status"] == "partial: 2 of 3 seeds"
    assert cell["ours"] == pytest.approx(sum(accs) / 2)
    assert cell["ours_std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
    assert f"{cell['ours']:.1f}±{cell['ours_std']:.1f} (89.6, " in to_markdown(experiment, collect(experiment, store, "smoke"), "smoke")


def copy_golden_store(tmp_path: Path) -> Path:
    shutil.copytree(GOLDEN / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def test_golden_table_renders_byte_for_byte(tmp_path, capsys):
    """DomainBed-style: the committed fixture runs render to the committed table; regenerate both with
    `python tests/fixtures/make_golden.py` when a change to rendering is intended."""
    runs = copy_golden_store(tmp_path)
    assert main(["table", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(tmp_path)]) == 0
    for suffix in (".md", ".tex", ".csv"):
        expected = (GOLDEN / "smoke" / f"table1_bilaw{suffix}").read_text()
        assert (tmp_path / "smoke" / f"table1_bilaw{suffix}").read_text() == expected, suffix


def test_golden_check_report(tmp_path, capsys):
    runs = copy_golden_store(tmp_path)
    assert main(["check", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "table1_bilaw [smoke]: " in out and "cells: 6 of 144 measured" in out
    # paper gates the exit status: its cells come from the committed ledger (F-MNIST Tiny-CNN ℓ∞), not reproduced
    assert main(["check", "table1_bilaw", "--profile", "paper", "--runs-dir", str(runs)]) == 1


def test_run_refuses_unknown_ids_profiles_and_substitutions(capsys, tmp_path):
    assert main(["run", "table1_bilw", "--dry-run"]) == 2
    assert "Did you mean 'table1_bilaw'" in capsys.readouterr().err
    assert main(["run", "fig9_caat", "--dry-run"]) == 2
    assert main(["run", "table1_cfa", "--profile", "quick", "--dry-run"]) == 2
    assert "unknown profile 'quick' for table1_cfa; choose one of paper, fast, smoke" in capsys.readouterr().err
    assert main(["run", "table1_cfa", "--substitute", "cifar10", "--dry-run"]) == 2
    assert "write DATASET=REPLACEMENT" in capsys.readouterr().err
    assert main(["run", "table1_cfa", "--substitute", "cifar10=cifar11", "--dry-run"]) == 2


def test_substitution_is_applied_and_recorded(tmp_path, capsys):
    assert main(["run", "table1_uiat", "--profile", "fast", "--substitute", "cifar10=cifar10-jpeg", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "natural_cifar10-jpeg_resnet18" in out and "_cifar10_resnet18" not in out
    runs = lookup("table1_uiat").runs("fast", {"cifar10": "cifar10-jpeg"})
    ids = {run.config.run_id() for run in runs}
    hat = next(run for run in runs if run.config.method == "hat" and run.config.dataset == "cifar10-jpeg")
    assert hat.needs and set(hat.needs) <= ids and dict(hat.config.hp)["helper"] in ids
    assert main(["table", "table1_uiat", "--profile", "fast", "--substitute", "cifar10=cifar10-jpeg",
                 "--runs-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert "dataset substitutions: cifar10 → cifar10-jpeg" in (tmp_path / "fast" / "table1_uiat.md").read_text()


def test_substitution_points_fine_tunes_at_the_substituted_hot_start():
    for name, fine_tuned in (("table1_caat", 9), ("table1_cfa", 2), ("fig5_caat", 16)):
        runs = lookup(name).runs("fast", {"cifar10": "cifar10-jpeg"})
        ids = {run.config.run_id(): run.config for run in runs}
        tuned = [run for run in runs if run.config.init_from is not None]
        assert len(tuned) == fine_tuned and all(cfg.dataset == "cifar10-jpeg" for cfg in ids.values()), name
        for run in tuned:
            start = ids[run.config.init_from]  # a planned run, itself substituted
            assert run.needs == (run.config.init_from,) and start.init_from is None
            assert start.scenario.imbalance == run.config.scenario.imbalance


def test_substitution_follows_a_chain_of_runs_naming_runs():
    base = RunConfig(dataset="cifar10", model="tiny-cnn")
    middle = RunConfig(dataset="cifar10", model="tiny-cnn", seed=1, init_from=base.run_id())
    top = RunConfig(method="hat", dataset="cifar10", model="tiny-cnn", seed=2, init_from=middle.run_id(),
                    hp=(("helper", base.run_id()),))  # hyperparameters are checked against the method's when built
    plan = [PlannedRun("top", top, needs=(middle.run_id(),)), PlannedRun("middle", middle, needs=(base.run_id(),)),
            PlannedRun("base", base)]
    out = {run.key: run for run in substitute(plan, {"cifar10": "svhn"})}
    assert out["middle"].config.init_from == out["base"].config.run_id() != base.run_id()
    assert out["top"].config.init_from == out["middle"].config.run_id() == out["top"].needs[0]
    assert out["top"].config.hp_dict["helper"] == out["base"].config.run_id()


def test_selecting_methods_keeps_the_runs_they_need():
    runs = select(lookup("table1_caat").runs("fast"), methods=("frl_rw",))
    assert [run.key for run in runs] == ["CIFAR-10/hot start", "CIFAR-10/FRL (ReWeight)"]


def test_figures_command_draws_the_theory_figures_into_the_profile_folder(tmp_path, capsys):
    assert main(["figures", "fig1_caat", "fig1_cfa", "--profile", "smoke", "--out", str(tmp_path)]) == 0
    for name in ("fig1_caat", "fig1_cfa"):
        assert (tmp_path / "smoke" / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / "smoke" / f"{name}.pdf").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["smoke"]  # nothing outside the profile's folder


def test_run_draws_a_figure_into_the_profile_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "fig1_cfa", "--profile", "smoke", "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]) == 0
    assert sorted(str(path.relative_to(tmp_path)) for path in (tmp_path / "figures").rglob("*")) == [
        "figures/smoke", "figures/smoke/fig1_cfa.pdf", "figures/smoke/fig1_cfa.png"]
