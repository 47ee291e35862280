"""The reproduction ledger: `ledger add` records what a table's cells read from two real smoke runs of BiLAW
Table 1 (F-MNIST), a table renders the same numbers from the ledger alone, every committed ledger file loads
and renders, training records its environment, and `report` writes the status page."""
import json
import shutil

import pytest
import torch
from short_test_set import short_test_set

import bench.eval_store as eval_store
from bench.cli import main
from bench.experiments.base import Cell
from bench.experiments.render import collect
from bench.experiments.stats import STATS
from bench.ledger import USES, Ledger, uses
from bench.papers import EXPERIMENTS, FIGURES
from bench.report import status_markdown
from bench.store import RunStore
from bench.train import train_run

KEYS = ("F-MNIST/Tiny-CNN/linf/AT", "F-MNIST/Tiny-CNN/linf/plain")
TEST_IMAGES = 256


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Two finished smoke runs of table1_bilaw in a run store, and a ledger made from them by the CLI."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    planned = {r.key: r for r in EXPERIMENTS.get("table1_bilaw").runs("smoke")}

    with short_test_set(TEST_IMAGES):
        for key in KEYS:
            train_run(planned[key].config, store.run_dir(planned[key].config), evaluation=planned[key].evaluation,
                      selection=planned[key].selection)
    ledger_dir = tmp_path_factory.mktemp("results")
    assert main(["ledger", "add", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(store.root),
                 "--out", str(ledger_dir)]) == 0
    return store, Ledger(ledger_dir), {key: eval_store.EvaluatedRun(store.run_dir(planned[key].config),
                                                                    planned[key].evaluation, planned[key].selection)
                                       for key in KEYS}


def test_one_file_per_run_checkpoint_and_evaluation_a_cell_reads(smoke):
    _, ledger, runs = smoke
    at = runs[KEYS[0]]
    assert sorted(p.name for p in (ledger.root / at.path.name).iterdir()) == [
        "best--aa.json", "best--clean.json", "best--pgd20.json"]  # Table 1 reads AT's best checkpoint
    plain = runs[KEYS[1]]
    assert sorted(p.name for p in (ledger.root / plain.path.name).iterdir())[0] == "last--aa.json"  # plain: the last
    entry = json.loads((ledger.root / at.path.name / "best--pgd20.json").read_text())
    measured = at.checkpoint("best")["attacks"]["pgd20"]
    assert entry["selection"] == at.selection("best") and entry["selection"]["rule"] == "best"
    assert entry["metrics"] == measured and entry["metrics"]["n"] == TEST_IMAGES
    assert entry["profile"] == "smoke" and entry["used_by"] == [{"table": "table1_bilaw", "profile": "smoke"}]
    assert entry["config"] == at.cfg.to_dict() and entry["dataset"] == "fmnist" and entry["substitution"] is None
    assert entry["method_hparams"] == json.loads(at.run.config_file.read_text())["method_hparams"]
    (attempt,) = entry["environment"]
    assert attempt["threads"] == torch.get_num_threads() and attempt["precision"] == "fp32"
    assert attempt["torch"] == torch.__version__ and attempt["device"].startswith("cpu")
    assert entry["wall_seconds"]["epochs"] == 1 and entry["wall_seconds"]["training"] >= 0
    assert not list(ledger.root.rglob("*.pt"))


def test_a_table_renders_the_same_numbers_from_the_ledger_alone(smoke, tmp_path):
    store, ledger, _ = smoke
    experiment = EXPERIMENTS.get("table1_bilaw")
    from_store = collect(experiment, store, "smoke", ledger=Ledger(tmp_path / "none"))
    from_ledger = collect(experiment, RunStore(tmp_path / "elsewhere"), "smoke", ledger=ledger)
    measured = from_store["ours"].notna()
    assert measured.sum() == 6  # two rows × clean / PGD / AA of the Tiny-CNN ℓ∞ column group
    assert from_ledger["ours"].notna().equals(measured)
    assert from_ledger.loc[measured, "ours"].tolist() == from_store.loc[measured, "ours"].tolist()
    assert set(from_ledger.loc[measured, "source"]) == {"ledger"} and set(from_store.loc[measured, "source"]) == {"store"}
    assert (from_ledger.loc[~measured, "status"] == "not run").all()


def test_a_run_store_folder_is_matched_against_every_tables_plan(smoke, tmp_path):
    store, ledger, _ = smoke
    out = tmp_path / "results"
    assert main(["ledger", "add", str(store.root), "--out", str(out)]) == 0
    assert sorted(p.relative_to(out) for p in out.rglob("*.json")) == sorted(
        p.relative_to(ledger.root) for p in ledger.root.rglob("*.json"))


def test_ledger_add_refuses_what_is_neither_a_table_nor_a_folder(capsys):
    assert main(["ledger", "add", "table9_nowhere"]) == 2
    assert "not a table id" in capsys.readouterr().err


def test_every_cell_statistic_names_what_it_reads():
    assert sorted(USES) == STATS.names()
    gap = Cell("r", "c", "k", checkpoint="best", attack="pgd20", stat="gap")
    assert uses(gap) == [("best", "clean"), ("best", "pgd20")]
    with pytest.raises(ValueError, match="statistic 'median'"):
        uses(Cell("r", "c", "k", stat="median"))


def renders(ledger: Ledger, tmp_path) -> int:
    """Every ledger file loads, and each run renders in every table that uses it, from the ledger alone."""
    cells_checked = 0
    for run in ledger.runs():
        entries = run.entries()
        assert entries, f"{run.path}: empty ledger folder"
        for e in entries:
            assert e["run_id"] == run.path.name and e["metrics"] is not None
        for use in {(u["table"], u["profile"]) for e in entries for u in e["used_by"]}:
            experiment = EXPERIMENTS.get(use[0])
            subs = {s: d for e in entries for s, d in (e["substitution"] or {}).items()}
            cells = collect(experiment, RunStore(tmp_path / "empty"), use[1], subs, ledger)
            mine = cells[cells["runs"].str.contains(run.path.name, regex=False)]
            assert len(mine) and not mine["ours"].isna().any(), f"{run.path.name} does not render in {use[0]}"
            cells_checked += len(mine)
    return cells_checked


def test_every_committed_ledger_file_loads_and_renders(smoke, tmp_path):
    assert renders(smoke[1], tmp_path) == 6  # the check itself, on the smoke ledger
    renders(Ledger(), tmp_path)  # tables/results/ as committed


def test_report_gives_each_table_and_figure_its_status(smoke, tmp_path):
    _, ledger, _ = smoke
    text = status_markdown(RunStore(tmp_path / "empty"), ledger)
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert set(EXPERIMENTS.names()) | set(FIGURES.names()) <= set(rows)
    assert rows["table1_bilaw"].startswith("| table1_bilaw | smoke | 6 of 144 | incomplete |")
    assert rows["table1_bilaw"].endswith("| 4 (4 not judged) | ledger (2 runs) |")
    assert rows["table1_cfa"] == "| table1_cfa | – | 0 of 88 | not run | – | 0 | – |"
    assert rows["fig1_caat"] == "| fig1_caat | closed form | drawn without runs |"


def test_a_run_missing_one_evaluation_is_recorded_whole_or_not_at_all(smoke, tmp_path, capsys):
    """A run still under AutoAttack has its clean and PGD-20 files: recording those alone would commit a run that
    renders some of its cells and not others."""
    store, _, runs = smoke
    at = runs[KEYS[0]]
    partial = RunStore(tmp_path / "runs")
    shutil.copytree(at.path, partial.root / at.path.name)
    for found in (partial.root / at.path.name / "evals").rglob("aa-*.json"):
        found.unlink()
    out = tmp_path / "results"
    main(["ledger", "add", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(partial.root), "--out", str(out)])
    assert not (out / at.path.name).exists()
    assert f"{at.path.name}: aa at best not measured; none of its files recorded" in capsys.readouterr().out
