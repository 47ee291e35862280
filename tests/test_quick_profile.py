"""table1_bilaw's `quick` profile (the README's first job): three rows of F-MNIST Tiny-CNN ℓ∞ cells, a schedule
that does not collapse, rendered into its own folder so it never replaces a fast or paper table."""
from bench.cli import main
from bench.papers import EXPERIMENTS
from bench.schedules import milestones

QUICK = ["F-MNIST/Tiny-CNN/linf/plain", "F-MNIST/Tiny-CNN/linf/AT", "F-MNIST/Tiny-CNN/linf/BiLAW(ours)"]


def test_quick_plans_the_three_readme_cells_with_a_real_schedule():
    runs = EXPERIMENTS.get("table1_bilaw").runs("quick")
    assert [run.key for run in runs] == QUICK
    assert [run.config.method for run in runs] == ["natural", "pgd_at", "bilaw"]
    for run in runs:
        assert run.config.dataset == "fmnist" and run.config.norm == "linf" and run.config.eps == 0.1
        assert min(milestones(run.config)) >= 1 and run.config.lr == 0.1


def test_quick_renders_into_its_own_folder_and_checks(tmp_path, capsys):
    fast = tmp_path / "tables" / "fast" / "table1_bilaw.md"
    fast.parent.mkdir(parents=True)
    fast.write_text("a fast table\n")
    runs = str(tmp_path / "runs")
    assert main(["table", "table1_bilaw", "--profile", "quick", "--runs-dir", runs, "--out", str(tmp_path / "tables")]) == 0
    text = (tmp_path / "tables" / "quick" / "table1_bilaw.md").read_text()
    assert "Profile `quick`; 0 of 9 cells measured" in text and "| F-MNIST / AT |" in text and "| MNIST / AT |" not in text
    assert fast.read_text() == "a fast table\n"
    assert main(["check", "table1_bilaw", "--profile", "quick", "--runs-dir", runs]) == 0
    assert "table1_bilaw [quick]: incomplete" in capsys.readouterr().out
