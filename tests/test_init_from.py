"""Starting a run from another run's final weights (`init_from`: a hot start to fine-tune): the model at epoch 0
holds the source's last weights, a resumed run reads its own last.pt, and a missing, unfinished or
different-architecture source is refused with an error that says what to do."""
import json
import re
import shutil

import pytest
import torch

import bench.training.assemble as training
from bench.cli import build_parser, config_from_args, main
from bench.checkpoint_io import load_checkpoint
from bench.config import RunConfig
from bench.store import RunStore
from bench.train import train_run

TINY = dict(dataset="fmnist", model="tiny-cnn", train_limit=128, epochs=1, attack_steps=1, eval_attacks=("clean",),
            eval_n=32)
UNKNOWN = "pgd_at_fmnist_tiny-cnn_s0-0123456789"
BUILD = training.build_method


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished one-epoch PGD-AT run: the hot start."""
    store = RunStore(tmp_path_factory.mktemp("source"))
    cfg = RunConfig(method="pgd_at", **TINY)
    train_run(cfg, store.run_dir(cfg))
    return store.run_dir(cfg)


def store_with(source, tmp_path) -> RunStore:
    """A fresh run store holding a copy of the source run."""
    shutil.copytree(source.path, tmp_path / source.path.name)
    return RunStore(tmp_path)


class _Stop(Exception):
    pass


def watch_epochs(monkeypatch, seen: dict, stop_at: int | None = None) -> None:
    """Record the model's weights at the start of each epoch; raise _Stop at `stop_at` (a crash)."""
    def build_and_watch(*args, **kwargs):
        method = BUILD(*args, **kwargs)
        start = method.on_epoch_start

        def on_epoch_start(model, epoch):
            if epoch == stop_at:
                raise _Stop
            seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
            start(model, epoch)

        method.on_epoch_start = on_epoch_start
        return method

    monkeypatch.setattr(training, "build_method", build_and_watch)


def fine_tune(source, **changes) -> RunConfig:
    return RunConfig(method="trades", **{**TINY, "lr": 0.01, "init_from": source.path.name, **changes})


def test_the_run_starts_from_the_sources_last_weights_and_records_them(source, tmp_path, monkeypatch):
    store = store_with(source, tmp_path)
    cfg = fine_tune(source)
    seen: dict = {}
    watch_epochs(monkeypatch, seen)
    train_run(cfg, store.run_dir(cfg))
    last = load_checkpoint(source.last_ckpt)["model"]
    assert set(seen[0]) == set(last)
    for k, v in last.items():
        assert torch.equal(seen[0][k], v), k
    resolved = json.loads(store.run_dir(cfg).config_file.read_text())["resolved"]
    assert resolved["init_from"] == {"run": source.path.name, "file": str(tmp_path / source.path.name / "last.pt"),
                                     "epoch": 0}
    plain = RunConfig(method="trades", **{**TINY, "lr": 0.01})
    assert cfg.run_id() != plain.run_id() and "init_from" not in plain.overrides()


def test_a_resumed_run_continues_from_its_own_checkpoint(source, tmp_path, monkeypatch):
    cfg = fine_tune(source, epochs=2)
    straight = store_with(source, tmp_path / "straight").run_dir(cfg)
    train_run(cfg, straight)
    store = store_with(source, tmp_path / "resumed")
    watch_epochs(monkeypatch, {}, stop_at=1)
    with pytest.raises(_Stop):
        train_run(cfg, store.run_dir(cfg))
    shutil.rmtree(store.root / source.path.name)  # reading the source again would now fail
    resumed_from: dict = {}
    watch_epochs(monkeypatch, resumed_from)
    train_run(cfg, store.run_dir(cfg))
    assert list(resumed_from) == [1] and store.run_dir(cfg).status() == "done"
    a = load_checkpoint(straight.last_ckpt)["model"]
    b = load_checkpoint(store.run_dir(cfg).last_ckpt)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_missing_or_unfinished_source_is_refused_before_anything_is_written(source, tmp_path):
    store = store_with(source, tmp_path)
    cfg = fine_tune(source, init_from=UNKNOWN)
    with pytest.raises(FileNotFoundError, match=rf"{UNKNOWN} is not in the run store .*train it first"):
        train_run(cfg, store.run_dir(cfg))
    assert not store.run_dir(cfg).path.exists()
    unfinished = store.root / "pgd_at_fmnist_tiny-cnn_s0-abcdef0123"
    shutil.copytree(source.path, unfinished, ignore=shutil.ignore_patterns("done", "heartbeat"))
    cfg = fine_tune(source, init_from=unfinished.name)
    with pytest.raises(ValueError, match=r"abcdef0123 is new, not finished"):
        train_run(cfg, store.run_dir(cfg))


def test_a_different_architecture_is_refused_naming_both(source, tmp_path):
    store = store_with(source, tmp_path)
    for changes, wanted in ((dict(model="small-cnn"), "small-cnn (without"), (dict(normalize=True), "tiny-cnn (with")):
        cfg = fine_tune(source, **changes)
        with pytest.raises(ValueError, match=r"holds a tiny-cnn \(without a mean/std layer\) for 10 classes of "
                                             rf"1×28×28 images; this run trains a {re.escape(wanted)}"):
            train_run(cfg, store.run_dir(cfg))


def test_init_from_must_be_a_run_id():
    with pytest.raises(ValueError, match=r"init_from='\.\./runs/x' is not a run id"):
        RunConfig(init_from="../runs/x")


def test_the_cli_flag_sets_it_and_reports_errors(source, tmp_path, capsys):
    args = build_parser().parse_args(["train", "--init-from", source.path.name])
    assert config_from_args(args).init_from == source.path.name
    flags = ["--runs-dir", str(tmp_path), "train", "--train-limit", "128", "--epochs", "1", "--device", "cpu"]
    assert main([*flags, "--init-from", UNKNOWN]) == 2
    assert "train it first" in capsys.readouterr().err
    assert main([*flags, "--init-from", "last.pt"]) == 2
    assert "not a run id" in capsys.readouterr().err
