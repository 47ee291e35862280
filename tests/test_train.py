"""The training loop on real Fashion-MNIST: smoke runs of every plugin, kill-and-resume, skip when done."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.checkpoint_io import load_checkpoint
from bench.config import RunConfig
from bench.eval_store import Evaluation
from bench.store import RunStore
from bench.train import train_run
from bench.data.scenarios import ScenarioConfig
from methods import METHODS, required_heldout

SMALL = dict(dataset="fmnist", model="tiny-cnn", train_limit=512, batch_size=128, attack_steps=2,
             eval_attacks=("clean", "pgd20"), eval_n=128)
CLEAN = Evaluation(("clean",))  # the evaluation after training: clean accuracy of best and last


# Compositions named in the papers' tables, with the overrides that make their add-ons act in one epoch.
COMPOSITIONS = {
    "pgd_at+ema": (("ema.start_epoch", "1"),),
    "pgd_at+ccm": (("ccm.begin_epoch", "0"),),
    "trades+ccm+ccr": (("ccm.begin_epoch", "0"), ("ccr.begin_epoch", "0"), ("loss_scale", "cfa")),
    "pgd_at+fawa": (("fawa.start_epoch", "1"), ("fawa.threshold", "0")),
    "pgd_at+cfa": (("cfa.begin_epoch", "1"), ("cfa.start_epoch", "1"), ("cfa.threshold", "0")),
    "trades+cfa": (("cfa.begin_epoch", "1"), ("cfa.start_epoch", "1"), ("cfa.threshold", "0"), ("loss_scale", "cfa")),
    "fat+cfa": (("cfa.begin_epoch", "1"), ("cfa.start_epoch", "1"), ("cfa.threshold", "0")),
    "nfgsm+uiat": (("uiat.start_fraction", "0"),),
    "rs_fgsm+uiat": (("uiat.start_fraction", "0"),),
    "gradalign+uiat": (("uiat.start_fraction", "0"),),
}


@pytest.fixture(scope="module")
def natural_helper(tmp_path_factory):
    """A naturally trained tiny-CNN run (HAT's helper model), trained once for the module."""
    store = RunStore(tmp_path_factory.mktemp("helper"))
    cfg = RunConfig(method="natural", epochs=1, **SMALL)
    train_run(cfg, store.run_dir(cfg), evaluation=None)
    return str(store.run_dir(cfg).path)


def smoke_config(method: str, helper: str | None = None, **changes) -> RunConfig:
    hp = dict(COMPOSITIONS.get(method, ()))
    if method.split("+")[0] == "hat":
        hp["helper"] = helper
    kind = required_heldout(method)
    scenario = ScenarioConfig(heldout=kind, heldout_per_class=20) if kind else ScenarioConfig()
    return RunConfig(method=method, hp=tuple(sorted(hp.items())), scenario=scenario, **{**SMALL, "epochs": 1, **changes})


@pytest.mark.parametrize("method", [*METHODS.names(), *COMPOSITIONS])
def test_every_method_trains_one_short_epoch(method, tmp_path, request):
    helper = request.getfixturevalue("natural_helper") if method.split("+")[0] == "hat" else None
    cfg = smoke_config(method, helper)
    store = RunStore(tmp_path)
    result = train_run(cfg, store.run_dir(cfg), evaluation=CLEAN)
    run = store.run_dir(cfg)
    rec = run.records()
    assert len(rec) == 1 and torch.isfinite(torch.tensor(rec[0]["train_loss"]))
    assert len(rec[0]["train_class_acc"]) == 10
    assert run.status() == "done"
    clean = result["checkpoints"]["last"]["attacks"]["clean"]
    assert 0.0 <= clean["acc"] <= 1.0 and len(clean["per_class"]) == 10
    # The same run with lr 0 keeps the initial weights: training must have moved away from them.
    if "+ema" in method:
        assert "last_ema" in result["checkpoints"]
        assert set(rec[0]["eval_averaged"]["ema"]["attacks"]) == {"clean", "pgd20"}
    frozen = smoke_config(method, helper, lr=0.0)
    train_run(frozen, store.run_dir(frozen), evaluation=None)
    trained = load_checkpoint(run.last_ckpt)["model"]
    initial = load_checkpoint(store.run_dir(frozen).last_ckpt)["model"]
    assert any(not torch.equal(trained[k], initial[k]) for k in initial), "training did not change the weights"


def test_finished_run_is_not_trained_again(tmp_path):
    cfg = RunConfig(method="natural", epochs=1, **SMALL)
    run = RunStore(tmp_path).run_dir(cfg)
    first = train_run(cfg, run, evaluation=CLEAN)
    stamps = {p: p.stat().st_mtime_ns for p in run.path.rglob("*") if p.is_file() and p.name != "environment.jsonl"}
    again = train_run(cfg, run, evaluation=CLEAN)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # weights and evaluations reused, not rewritten


def _train_cmd(runs, epochs):
    return [sys.executable, "-m", "bench", "--runs-dir", str(runs), "train", "--method", "pgd_at",
            "--dataset", "fmnist", "--model", "tiny-cnn", "--epochs", str(epochs), "--train-limit", "2048",
            "--attack-steps", "3", "--eval-n", "64", "--eval-attacks", "clean,pgd20", "--final-attacks", "clean",
            "--device", "cpu"]


def test_kill_and_resume_gives_identical_weights(tmp_path):
    env = {**os.environ, "CI": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(straight, 3), check=True, env=env, capture_output=True)

    proc = subprocess.Popen(_train_cmd(killed, 3), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = None
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once the first epoch is stored, somewhere inside the second
        found = list(killed.glob("*/records.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            records = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert records is not None, "the first epoch never finished"
    run = RunStore(killed).open(records.parent.name)
    assert run.status() == "crashed"  # heartbeat still fresh, but its process is gone
    assert not run.done_file.exists()
    subprocess.run(_train_cmd(killed, 3), check=True, env=env, capture_output=True)

    a = load_checkpoint(next(straight.glob("*/last.pt")))
    b = load_checkpoint(run.last_ckpt)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["epoch"] for r in run.records()] == [0, 1, 2]
    kept = sorted(p.name for p in next(straight.glob("*/checkpoints")).iterdir())
    assert kept == sorted(p.name for p in run.checkpoints_dir.iterdir())  # the same candidates kept


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("method", [*METHODS.names(), *COMPOSITIONS])
def test_interrupted_method_resumes_to_the_same_weights(method, tmp_path, request, monkeypatch):
    """Stop a 2-epoch run before its second epoch, resume it: the weights equal an uninterrupted run's, so
    the method's own state (class budgets, memories, meta-networks, generators) was saved and restored."""
    import bench.training.assemble as training

    helper = request.getfixturevalue("natural_helper") if method.split("+")[0] == "hat" else None
    cfg = smoke_config(method, helper, epochs=2, eval_every=2)
    straight = RunStore(tmp_path / "straight").run_dir(cfg)
    train_run(cfg, straight, evaluation=None)

    build = training.build_method

    def build_then_stop_at_epoch_1(*args, **kwargs):
        method_obj = build(*args, **kwargs)
        start = method_obj.on_epoch_start

        def on_epoch_start(model, epoch):
            if epoch == 1:
                raise _Interrupt
            start(model, epoch)

        method_obj.on_epoch_start = on_epoch_start
        return method_obj

    resumed = RunStore(tmp_path / "resumed").run_dir(cfg)
    monkeypatch.setattr(training, "build_method", build_then_stop_at_epoch_1)
    with pytest.raises(_Interrupt):
        train_run(cfg, resumed, evaluation=None)
    monkeypatch.setattr(training, "build_method", build)
    train_run(cfg, resumed, evaluation=None)
    a = load_checkpoint(straight.last_ckpt)
    b = load_checkpoint(resumed.last_ckpt)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=k)


def test_each_epoch_record_holds_the_lr_that_epoch_trained_at(tmp_path):
    cfg = RunConfig(method="natural", epochs=3, milestones=(1, 2), **{**SMALL, "train_limit": 256, "eval_n": 32})
    store = RunStore(tmp_path)
    train_run(cfg, store.run_dir(cfg), evaluation=None)
    assert [r["lr"] for r in store.run_dir(cfg).records()] == pytest.approx([0.1, 0.01, 0.001])
