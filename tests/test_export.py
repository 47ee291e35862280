"""`status --json` and `export --format csv|parquet` on a real smoke run: one tidy row per (run, checkpoint,
attack, class) of every per-epoch and stored (training's final, `bench eval`) evaluation, equal to the stored JSON."""
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.selection import Best

SMALL = ["--method", "pgd_at", "--dataset", "fmnist", "--model", "tiny-cnn", "--epochs", "2",
         "--attack-steps", "1", "--eval-n", "32", "--final-attacks", "clean"]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
TEST_N = 200


def _first_idx(source: Path, target: Path, n: int) -> None:
    """The first n items of an IDX file (images: 16-byte header, 784 bytes each; labels: 8 and 1)."""
    data = gzip.decompress(source.read_bytes())
    header, item = (16, 784) if "images" in source.name else (8, 1)
    target.write_bytes(gzip.compress(data[:4] + n.to_bytes(4, "big") + data[8:header] + data[header:header + n * item]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if not FMNIST.is_dir():
        pytest.skip(f"Fashion-MNIST not found in {FMNIST}")
    data, root = tmp_path_factory.mktemp("fmnist"), tmp_path_factory.mktemp("runs")
    for split, n in (("train", 256), ("t10k", TEST_N)):
        for kind in ("images-idx3", "labels-idx1"):
            _first_idx(FMNIST / f"{split}-{kind}-ubyte.gz", data / f"{split}-{kind}-ubyte.gz", n)
    patch = pytest.MonkeyPatch()
    patch.setenv("BENCH_FMNIST_DIR", str(data))
    patch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    runs = ["--runs-dir", str(root)]
    assert main([*runs, "train", *SMALL]) == 0
    run_id = next(root.iterdir()).name
    for attack in ("clean", "pgd10"):  # two calls: the second must keep the first's numbers
        assert main([*runs, "eval", run_id, "--checkpoint", "last", "--attacks", attack]) == 0
    yield root, run_id
    patch.undo()


def test_later_evaluations_keep_the_earlier_attacks(store):
    root, run_id = store
    saved = sorted(p.name.split("-")[0] for p in (root / run_id / "evals" / "model-e0001").glob("*.json"))
    assert saved == ["clean", "pgd10"]  # `eval --attacks clean` reused training's; pgd10 was added beside it


def test_status_json_lists_every_run_state(store, capsys):
    root, run_id = store
    capsys.readouterr()
    assert main(["--runs-dir", str(root), "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"] == {"done": 1} and doc["runs_dir"] == str(root)
    [run] = doc["runs"]
    assert (run["run_id"], run["status"], run["epochs_done"], run["epochs"], run["method"]) == (run_id, "done", 2, 2,
                                                                                                "pgd_at")


def test_status_json_of_an_empty_store(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []


@pytest.mark.parametrize("fmt,read", [("csv", pd.read_csv), ("parquet", pd.read_parquet)])
def test_export_writes_one_row_per_run_checkpoint_attack_and_class(store, tmp_path, fmt, read):
    root, run_id = store
    out = tmp_path / f"table.{fmt}"
    assert main(["--runs-dir", str(root), "export", "--format", fmt, "--out", str(out)]) == 0
    table = read(out)
    keys = ["run_id", "source", "checkpoint", "epoch", "attack", "class"]
    assert not table.duplicated(keys).any()
    best = Best().choose([json.loads(line) for line in (root / run_id / "records.jsonl").read_text().splitlines()], 2)
    evaluations = table.groupby(["source", "checkpoint", "epoch", "attack"]).size().to_dict()
    assert evaluations == {("train", "epoch", 0, "clean"): 10, ("train", "epoch", 0, "pgd20"): 10,
                           ("train", "epoch", 1, "clean"): 10, ("train", "epoch", 1, "pgd20"): 10,
                           ("eval", f"model@e{best}", best, "clean"): 10,
                           ("eval", "model@e1", 1, "clean"): 10, ("eval", "model@e1", 1, "pgd10"): 10}
    [saved] = (root / run_id / "evals" / "model-e0001").glob("clean-*.json")
    result = json.loads(saved.read_text())["result"]
    final = table[(table.source == "eval") & (table.checkpoint == "model@e1") & (table.attack == "clean")].sort_values("class")
    assert final["class_acc"].tolist() == pytest.approx(result["per_class"])
    assert final["acc"].tolist() == pytest.approx([result["acc"]] * 10) and set(final["n"]) == {TEST_N}
    record = json.loads((root / run_id / "records.jsonl").read_text().splitlines()[1])["eval"]["attacks"]["pgd20"]
    epoch = table[(table.source == "train") & (table.epoch == 1) & (table.attack == "pgd20")].sort_values("class")
    assert epoch["class_acc"].tolist() == pytest.approx(record["per_class"]) and set(epoch["n"]) == {32}


def test_export_refuses_an_unknown_format(store, capsys):
    root, _ = store
    assert main(["--runs-dir", str(root), "export", "--format", "xlsx"]) == 2
    assert "'xlsx'" in capsys.readouterr().err
