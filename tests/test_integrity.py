"""The run record verifies what it reads: checkpoints by checksum and with weights_only=True (a planted pickle
payload never runs), JSON strictly; a damaged file is named in one line, the run is marked damaged and the
other runs go on; a diverged run stops at the first non-finite loss or weight; `bench train` takes the lease;
killed writes' temp files are removed on the next open; one SLURM-aware state for status, run and table."""
from __future__ import annotations

import builtins
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.atomic import DamagedFile
from bench.checkpoint_io import MAGIC, load_checkpoint, save_checkpoint
from bench.cli import main
from bench.config import RunConfig
from bench.divergence import Diverged, check_finite
from bench.executors import LocalExecutor
from bench.papers import EXPERIMENTS
from bench.experiments.base import PlannedRun
from bench.experiments.render import collect
from bench.lease import RunLease
from bench.run_state import run_state
from bench.selection import Last
from bench.store import RunDir, RunStore
from bench.train import Runtime, train_run

SMALL = dict(dataset="fmnist", model="tiny-cnn", train_limit=256, batch_size=128, attack_steps=1,
             eval_attacks=("clean",), eval_n=64)
GOLDEN = Path(__file__).parent / "fixtures" / "golden"


class _Interrupt(Exception):
    pass


def _interrupted(cfg: RunConfig, run, stop_at: int, monkeypatch) -> None:
    """Train `run` until epoch `stop_at` starts, then stop it as a kill would (no done, no result)."""
    import bench.training.assemble as training

    build = training.build_method

    def build_then_stop(*args, **kwargs):
        method = build(*args, **kwargs)
        start = method.on_epoch_start

        def on_epoch_start(model, epoch):
            if epoch == stop_at:
                raise _Interrupt
            start(model, epoch)

        method.on_epoch_start = on_epoch_start
        return method

    monkeypatch.setattr(training, "build_method", build_then_stop)
    with pytest.raises(_Interrupt):
        train_run(cfg, run)
    monkeypatch.setattr(training, "build_method", build)
    run.error_file.unlink()  # a kill leaves no traceback behind


class _Payload:
    """Unpickling this calls exec: what a crafted checkpoint would do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _with_header(payload: bytes, meta: str = '{"epoch": 0}') -> bytes:
    """A file with a valid bench checksum line: an attacker can compute the checksum too."""
    return MAGIC + f"{hashlib.sha256(payload).hexdigest()} {meta}\n".encode() + payload


@pytest.mark.parametrize("with_checksum", [True, False])
def test_a_planted_pickle_payload_is_refused_on_resume_and_never_runs(tmp_path, monkeypatch, with_checksum):
    cfg = RunConfig(method="natural", epochs=2, **SMALL)
    run = RunStore(tmp_path / "runs").run_dir(cfg)
    _interrupted(cfg, run, 1, monkeypatch)
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"model": _Payload(marker), "epoch": 0}, buffer)
    run.last_ckpt.write_bytes(_with_header(buffer.getvalue()) if with_checksum else buffer.getvalue())
    with pytest.raises(DamagedFile) as err:
        train_run(cfg, run)
    assert not marker.exists()
    message = str(err.value)
    assert str(run.last_ckpt) in message and "\n" not in message
    assert ("weights_only" if with_checksum else "no bench checksum") in message
    assert run.status() == "damaged" and str(run.last_ckpt) in run_state(run).reason


def test_a_truncated_last_checkpoint_resumes_from_the_previous_epoch_to_the_same_weights(tmp_path, monkeypatch, capsys):
    cfg = RunConfig(method="pgd_at", epochs=3, eval_every=3, **SMALL)
    straight = RunStore(tmp_path / "straight").run_dir(cfg)
    train_run(cfg, straight)
    run = RunStore(tmp_path / "damaged").run_dir(cfg)
    _interrupted(cfg, run, 2, monkeypatch)  # last.pt: epoch 1, last_prev.pt: epoch 0
    data = run.last_ckpt.read_bytes()
    run.last_ckpt.write_bytes(data[: len(data) // 2])
    stale = [run.path / ".records.jsonl.k1ll3d.tmp", run.path / ".last.pt.x9.tmp"]
    for path in stale:
        path.write_text("partial")
    lease_tmp = run.path / ".lease.json.abc.tmp"  # a submitter may be writing it right now: kept
    lease_tmp.write_text("{}")
    capsys.readouterr()

    train_run(cfg, run)

    said = capsys.readouterr()
    damaged_line = [line for line in (said.out + said.err).splitlines() if "last.pt: damaged" in line]
    assert damaged_line and "checksum mismatch" in damaged_line[0]
    assert (run.path / "last.pt.damaged").read_bytes() == data[: len(data) // 2]  # kept, not replaced silently
    assert not any(path.exists() for path in stale) and lease_tmp.exists()
    a, b = load_checkpoint(straight.last_ckpt), load_checkpoint(run.last_ckpt)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["epoch"] for r in run.records()] == [0, 1, 2] and run.status() == "done"
    assert not run.prev_ckpt.exists()  # only a resume could need it


def test_an_empty_last_checkpoint_without_an_earlier_one_marks_the_run_damaged(tmp_path, monkeypatch, capsys):
    cfg = RunConfig(method="natural", epochs=2, **SMALL)
    runs = tmp_path / "runs"
    run = RunStore(runs).run_dir(cfg)
    _interrupted(cfg, run, 1, monkeypatch)  # last.pt of epoch 0, nothing before it
    run.last_ckpt.write_bytes(b"")
    args = ["train", "--method", "natural", "--dataset", "fmnist", "--model", "tiny-cnn", "--train-limit", "256",
            "--batch-size", "128", "--attack-steps", "1", "--eval-attacks", "clean", "--rule", "best:attack=clean",
            "--eval-n", "64", "--final-attacks", "clean", "--epochs", "2", "--runs-dir", str(runs), "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {run.last_ckpt}: damaged: empty (0 bytes); no intact checkpoint to resume from"]
    assert run.last_ckpt.read_bytes() == b""  # nothing replaced
    assert main(["status", "--runs-dir", str(runs)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if run.path.name in line)
    assert line.startswith("damaged") and f"{run.last_ckpt}: damaged: empty" in line


def test_json_is_written_and_read_strictly(tmp_path):
    from bench.store import RunDir

    run = RunDir(tmp_path)
    run.append_record({"epoch": 0, "train_loss": 0.5})
    with pytest.raises(ValueError, match="Out of range float"):
        run.append_record({"epoch": 1, "train_loss": math.nan})
    assert "NaN" not in run.records_file.read_text() and len(run.records()) == 1
    with open(run.records_file, "a") as f:
        f.write('{"epoch": 1, "train_lo')  # killed mid-append: ignored
    assert [r["epoch"] for r in run.records()] == [0]
    run.records_file.write_text('{"epoch": 0}\n{"epoch": 1, "train_loss": NaN}\n{"epoch": 2}\n')
    with pytest.raises(DamagedFile, match=r"records.jsonl: damaged: line 2 is not valid JSON.*NaN"):
        run.records()


def _golden_store(tmp_path: Path) -> Path:
    shutil.copytree(GOLDEN / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def test_a_damaged_run_record_is_named_in_status_table_and_check_and_the_others_go_on(tmp_path, capsys):
    runs = _golden_store(tmp_path)
    natural = next(runs.glob("natural_*"))
    (natural / "config.json").write_text('{"config": {"method": ')
    assert main(["status", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"{natural / 'config.json'}: damaged: not valid JSON" in out
    assert "done" in next(line for line in out.splitlines() if "pgd_at_fmnist" in line)

    assert main(["table", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(runs), "--out", str(tmp_path)]) == 0
    table = (tmp_path / "smoke" / "table1_bilaw.md").read_text()
    assert f"damaged: {natural / 'config.json'}: damaged: not valid JSON" in table
    cells = collect(EXPERIMENTS.get("table1_bilaw"), RunStore(runs), "smoke")
    assert (cells["seeds"] > 0).sum() == 3  # the AT row's three cells are still measured
    assert main(["check", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "cells: 3 of 144 measured" in out and "not measured F-MNIST / plain" in out and "config.json" in out


def test_a_damaged_run_fails_alone_in_a_grid(tmp_path, capsys):
    store = RunStore(tmp_path)
    plan = [PlannedRun(m, RunConfig(method=m, epochs=1, **SMALL), evaluation=None, selection=Last())
            for m in ("natural", "pgd_at")]
    damaged = store.run_dir(plan[0].config)
    damaged.path.mkdir(parents=True)
    damaged.config_file.write_text('{"config": {"method": "natural", ')
    assert LocalExecutor(Runtime()).run(plan, store) == 1
    said = capsys.readouterr()
    assert f"not trained: {damaged.config_file}: damaged: not valid JSON" in said.out + said.err
    assert store.run_dir(plan[1].config).status() == "done"
    assert run_state(damaged).status == "damaged"


def test_a_diverged_run_stops_at_the_first_non_finite_loss_with_its_epoch_and_batch(tmp_path):
    cfg = RunConfig(method="pgd_at", epochs=4, lr=1e4, **SMALL)
    run = RunStore(tmp_path).run_dir(cfg)
    with pytest.raises(Diverged) as err:
        train_run(cfg, run)
    found = re.match(r"training diverged at epoch (\d+), batch \d+: loss (nan|inf);", str(err.value))
    assert found, str(err.value)
    epoch = int(found.group(1))  # 1-based; every epoch before it finished with finite numbers
    state = run_state(run)
    assert state.status == "failed" and state.reason.endswith(str(err.value))
    assert [r["epoch"] for r in run.records()] == list(range(epoch - 1)) and not run.done_file.exists()
    assert not run.records_file.exists() or "NaN" not in run.records_file.read_text()
    assert state.epochs_done == epoch - 1


def test_a_non_finite_weight_stops_training_too():
    model = torch.nn.Linear(2, 2)
    check_finite(torch.tensor(0.3), model, 0, 0)
    with torch.no_grad():
        model.weight[0, 1] = math.inf
    with pytest.raises(Diverged, match=r"epoch 3, batch 8: a weight is inf after the update"):
        check_finite(torch.tensor(0.3), model, 2, 7)


def test_epochs_done_counts_only_epochs_whose_checkpoint_landed(tmp_path):
    from bench.store import RunDir

    run = RunDir(tmp_path)
    for epoch in range(3):
        run.append_record({"epoch": epoch})
    assert run.epochs_done() == 0  # no checkpoint at all
    save_checkpoint(run.last_ckpt, {"epoch": 1}, meta={"epoch": 1})
    assert run.epochs_done() == 2  # the third record's checkpoint never landed


def test_numpy_and_python_rng_states_round_trip_exactly(tmp_path):
    import random

    import numpy as np

    np.random.seed(5)
    np.random.randn(3)  # leaves a cached Gaussian in the state
    random.seed(7)
    random.gauss(0, 1)
    state = {"numpy": np.random.get_state(), "python": random.getstate(), "scalar": np.float32(0.25)}
    save_checkpoint(tmp_path / "rng.pt", state)
    back = load_checkpoint(tmp_path / "rng.pt")
    expected = (np.random.rand(4), random.random())
    np.random.set_state(back["numpy"])
    random.setstate(back["python"])
    assert (np.random.rand(4) == expected[0]).all() and random.random() == expected[1]
    assert back["scalar"] == np.float32(0.25) and back["scalar"].dtype == np.float32


def test_two_concurrent_train_commands_train_the_run_once(tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "bench", "train", "--method", "pgd_at", "--dataset", "fmnist", "--model",
           "tiny-cnn", "--train-limit", "512", "--batch-size", "64", "--attack-steps", "2", "--epochs", "4",
           "--eval-attacks", "clean", "--rule", "best:attack=clean", "--eval-n", "64", "--final-attacks", "clean",
           "--runs-dir", str(runs), "--device", "cpu"]
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    (ok, _), (refused, message) = outcomes
    assert (ok, refused) == (0, 1)
    assert "is being trained by local process" in message and "not training it twice" in message
    run = next(RunStore(runs).runs())
    assert [r["epoch"] for r in run.records()] == [0, 1, 2, 3] and run.status() == "done"
    assert not RunLease(run.path).path.exists()


def test_a_held_lease_refuses_train_with_the_holder_and_writes_nothing(tmp_path, capsys):
    cfg = RunConfig(method="natural", epochs=1, **SMALL)
    runs = tmp_path / "runs"
    run = RunStore(runs).run_dir(cfg)
    assert RunLease(run.path).acquire("local", 1)  # this test process holds it
    args = ["train", "--method", "natural", "--dataset", "fmnist", "--model", "tiny-cnn", "--train-limit", "256",
            "--batch-size", "128", "--attack-steps", "1", "--eval-attacks", "clean", "--rule", "best:attack=clean",
            "--eval-n", "64", "--final-attacks", "clean", "--epochs", "1", "--runs-dir", str(runs)]
    assert main(args) == 1
    assert f"local process {os.getpid()} on" in capsys.readouterr().err
    assert sorted(p.name for p in run.path.iterdir()) == ["lease.json"]


@pytest.fixture
def fake_sacct(tmp_path, monkeypatch):
    """A `sacct` on PATH that reports job 4242 as PENDING, as SLURM's accounting would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sacct"
    script.write_text("#!/bin/sh\necho '4242|PENDING'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_a_queued_slurm_run_shows_queued_in_status_run_and_table(tmp_path, fake_sacct, capsys):
    runs = _golden_store(tmp_path)
    store = RunStore(runs)
    planned = next(run for run in EXPERIMENTS.get("table1_bilaw").runs("smoke", {})
                   if run.config is not None and run.config.method == "gairat" and run.config.dataset == "fmnist"
                   and run.config.model == "tiny-cnn" and run.config.norm == "linf")
    run = store.run_dir(planned.config)
    run.path.mkdir()
    entry = {"job_id": "4242", "executor": "slurm", "log": "/logs/4242_0_log.out", "cluster": "test",
             "submitted": "2026-01-01T00:00:00", "key": planned.key, "run": run.path.name}
    (run.path / "jobs.jsonl").write_text(json.dumps(entry) + "\n")

    assert run_state(run, {"4242": "PENDING"}).status == "queued"
    assert main(["status", "--runs-dir", str(runs)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if run.path.name in line)
    assert line.startswith("queued") and "[job 4242 PENDING" in line
    assert main(["run", "table1_bilaw", "--profile", "smoke", "--dry-run", "--runs-dir", str(runs)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if str(run.path) in line)
    assert line.split()[0] == "queued"
    cells = collect(EXPERIMENTS.get("table1_bilaw"), store, "smoke")
    assert set(cells[cells["runs"] == run.path.name]["status"]) == {"queued"}


def test_extra_run_files_are_declared_by_the_store(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.extra("bilaw_weight_probe") == run.path / "fig_bilaw_weights.json"
    with pytest.raises(ValueError, match="no extra run file 'probe'; declared: bilaw_weight_probe, caat_fig4_series"):
        run.extra("probe")
