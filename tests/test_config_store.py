"""Run identity, typed hyperparameters, schedules and the run store's crash-safety."""
import json
import os
import time

import pytest
import torch

from bench import atomic, hparams
from bench.config import RunConfig
from bench.schedules import build_schedule
from bench.store import STALE_AFTER_SECONDS, RunDir, RunStore
from methods.standard.trades import TRADESHparams


def test_run_id_depends_only_on_non_default_fields():
    a = RunConfig(method="trades", epochs=3)
    assert a.run_id() == RunConfig(epochs=3, method="trades").run_id()
    assert a.run_id() != RunConfig(method="trades", epochs=4).run_id()
    assert a.run_id().startswith("trades_fmnist_tiny-cnn_s0-")
    assert a.overrides() == {"method": "trades", "epochs": 3}


def test_config_round_trips_through_json():
    cfg = RunConfig(method="mart", hp=(("beta", "5"),), milestones=(30, 60), eval_attacks=("clean", "pgd20", "cw"))
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.run_id() == cfg.run_id()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="epochs=0"):
        RunConfig(epochs=0)
    with pytest.raises(ValueError, match="train_limit=0 is not allowed; allowed: an integer ≥ 1"):
        RunConfig(train_limit=0)
    with pytest.raises(ValueError, match="unknown run-config field"):
        RunConfig.from_dict({"epoch": 3})


def test_hparams_are_typed_and_checked():
    hp = hparams.build(TRADESHparams, {"beta": "1", "init": "uniform"})
    assert hp.beta == 1.0 and hp.init == "uniform"
    with pytest.raises(ValueError, match="init='gaussian' is not allowed"):
        hparams.build(TRADESHparams, {"init": "gaussian"})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['betta'\]"):
        hparams.build(TRADESHparams, {"betta": "6"})
    with pytest.raises(ValueError, match="beta='six' is not a number; allowed: a float"):
        hparams.build(TRADESHparams, {"beta": "six"})
    with pytest.raises(ValueError, match="key=value"):
        hparams.parse_pairs(["beta"])


def _lrs(cfg, steps_per_epoch=3):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = build_schedule(opt, cfg, steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_piecewise_schedule_drops_at_milestone_epochs():
    lrs = _lrs(RunConfig(epochs=4, lr=0.1, milestones=(1, 3), gamma=0.1))
    assert lrs[:3] == pytest.approx([0.1] * 3)
    assert lrs[3:9] == pytest.approx([0.01] * 6)
    assert lrs[9:] == pytest.approx([0.001] * 3)


def test_cyclic_schedule_is_a_triangle():
    lrs = _lrs(RunConfig(epochs=10, lr=0.2, schedule="cyclic"), steps_per_epoch=1)
    assert lrs[0] == 0 and max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 4
    assert lrs[-1] < lrs[5]


def test_atomic_write_leaves_old_file_when_write_fails(tmp_path):
    target = tmp_path / "x.json"
    atomic.write_json(target, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic.write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_records_ignore_a_torn_last_line_and_truncate(tmp_path):
    run = RunDir(tmp_path)
    for e in range(3):
        run.append_record({"epoch": e})
    with open(run.records_file, "a") as f:
        f.write('{"epoch": 3, "lo')  # killed mid-append
    assert [r["epoch"] for r in run.records()] == [0, 1, 2]
    run.truncate_records(2)
    assert [r["epoch"] for r in run.records()] == [0, 1]


def test_status_tells_new_running_crashed_done(tmp_path):
    run = RunStore(tmp_path).run_dir(RunConfig())
    run.path.mkdir(parents=True)
    assert run.status() == "new"
    with run.heartbeat():
        assert run.status() == "running"
    old = time.time() - STALE_AFTER_SECONDS - 1
    os.utime(run.heartbeat_file, (old, old))
    assert run.status() == "crashed"
    run.mark_done()
    assert run.status() == "done"


def test_failure_inside_heartbeat_reads_as_failed_at_once_with_its_traceback(tmp_path):
    run = RunStore(tmp_path).run_dir(RunConfig())
    run.path.mkdir(parents=True)
    with pytest.raises(RuntimeError):
        with run.heartbeat():
            raise RuntimeError("loss is nan at epoch 3")
    assert run.status() == "failed"
    assert "loss is nan at epoch 3" in run.error_file.read_text()
    with run.heartbeat():  # the next attempt starts clean
        assert run.status() == "running" and not run.error_file.exists()


def test_store_opens_runs_by_unique_prefix(tmp_path):
    store = RunStore(tmp_path)
    for method in ("trades", "mart"):
        cfg = RunConfig(method=method)
        atomic.write_json(store.run_dir(cfg).config_file, {"config": cfg.to_dict()})
    assert store.open("trades").config().method == "trades"
    with pytest.raises(FileNotFoundError, match="no stored run 'pgd'"):
        store.open("pgd")
