"""Experiments: every id plans its grid in every profile, and a table renders from stored runs only."""
import math

import pytest

from bench.cli import main
from bench.experiments import EXPERIMENTS, PROFILES
from bench.experiments.render import collect, to_markdown
from bench.published import load_published
from bench.store import RunStore
from bench.train import train_run


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_plans_its_grid(profile):
    bilaw = EXPERIMENTS.get("table1_bilaw").runs(profile)
    assert len(bilaw) == 48 and sum(run.config is not None for run in bilaw) == 24  # ℓ2 half not runnable
    for name in EXPERIMENTS:
        experiment = EXPERIMENTS.get(name)
        keys = [run.key for run in experiment.runs(profile)]
        assert len(keys) == len(set(keys))
        assert {cell.run for cell in experiment.cells()} <= set(keys)


def test_cells_match_the_published_layout_exactly():
    for name in EXPERIMENTS:
        experiment = EXPERIMENTS.get(name)
        published = load_published(experiment.paper)
        published = published[published["table"] == experiment.table]
        ours = {(c.row, c.column) for c in experiment.cells()}
        assert ours == set(zip(published["row"], published["column"]))


def test_a_table_renders_from_stored_runs_with_published_numbers_and_missing_marks(tmp_path):
    experiment = EXPERIMENTS.get("table1_bilaw")
    store = RunStore(tmp_path)
    at = next(run for run in experiment.runs("smoke") if run.key == "F-MNIST/Tiny-CNN/linf/AT")
    result = train_run(at.config, store.run_dir(at.config))
    cells = collect(experiment, store, "smoke").set_index(["row", "column"])
    cell = cells.loc[("F-MNIST / AT", "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / PGD")]
    assert cell["status"] == "done" and cell["published"] == 70.1
    assert cell["ours"] == pytest.approx(100 * result["checkpoints"]["best"]["attacks"]["pgd20"]["acc"])
    assert cell["diff"] == pytest.approx(cell["ours"] - 70.1)
    assert cells.loc[("F-MNIST / plain", "FC1 / perturbation: ℓ∞ / ε = 0.1 / AA"), "status"] == "not run"
    l2 = cells.loc[("F-MNIST / AT", "Tiny-CNN / perturbation: ℓ2 / ε = 0.3 / AA")]
    assert l2["status"].startswith("not runnable") and math.isnan(l2["ours"])
    text = to_markdown(experiment, cells.reset_index(), "smoke")
    assert f"{cell['ours']:.1f} (70.1, {cell['ours'] - 70.1:+.1f})" in text
    assert "Profile `smoke`; 3 of 144 cells measured" in text


def test_run_dry_run_and_unknown_ids(capsys, tmp_path):
    assert main(["run", "table1_bilaw", "--profile", "smoke", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "48 runs; 24 new, 24 not runnable" in out
    assert main(["run", "table1_bilw", "--dry-run"]) == 2
    assert "Did you mean 'table1_bilaw'" in capsys.readouterr().err
    assert main(["run", "table1_bilaw", "--profile", "quick", "--dry-run"]) == 2
