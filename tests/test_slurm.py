"""The cluster path against a real SLURM (slurm/local_cluster.sh): a smoke grid goes out as one job array
and renders into a table; a requeued job resumes from its last epoch and ends with the same result as an
uninterrupted one; a failing run is reported failed with its log and resubmitted; two concurrent `bench run`
calls never submit one run twice. Skipped, with the reason, where there is no running cluster."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.checkpoint_io import load_checkpoint
from bench.config import RunConfig
from bench.eval_store import EvaluatedRun, Evaluation
from bench.executors import SubmititExecutor
from bench.executors.cluster import load_cluster
from bench.experiments.base import PlannedRun
from bench.experiments.grid import missing
from bench.lease import last_job, slurm_states
from bench.selection import Last
from bench.store import RunStore
from bench.train import train_run


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not found: install and start the local cluster with `slurm/local_cluster.sh install && " \
               "slurm/local_cluster.sh start`"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed ({err}): start the cluster with `slurm/local_cluster.sh start`"
    if not any(s in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node is up (sinfo: {states or 'nothing'}): `slurm/local_cluster.sh start`"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_cluster_problem() is not None, reason=str(_cluster_problem()))]

TIMEOUT = 600
TINY = dict(dataset="fmnist", model="tiny-cnn", epochs=1, train_limit=128, attack_steps=1, eval_attacks=("clean",),
            eval_n=32)
CLEAN, LAST = Evaluation(("clean",), n=64), Last()  # what the jobs evaluate after training


def wait_for(condition, what: str, timeout: float = TIMEOUT, poll: float = 1.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            subprocess.run(["squeue"], check=False)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def job_state(job_id: str) -> str | None:
    return slurm_states([job_id]).get(job_id)


@pytest.fixture
def cluster():
    return load_cluster("local")


def test_a_smoke_grid_goes_out_as_one_array_and_renders_into_a_table(tmp_path, capsys):
    args = ["table1_bilaw", "--profile", "smoke", "--methods", "natural,pgd_at", "--datasets", "fmnist",
            "--models", "tiny-cnn", "--runs-dir", str(tmp_path)]  # 2 methods × ℓ∞/ℓ2 = 4 runs, 12 cells
    began = time.time()
    assert main(["run", *args, "--executor", "slurm", "--cluster", "local"]) == 0
    submitted = time.time() - began
    runs = [path for path in tmp_path.iterdir() if (path / "jobs.jsonl").exists()]
    jobs = [last_job(path) for path in runs]
    assert len(jobs) == 4 and len({job["job_id"].split("_")[0] for job in jobs}) == 1  # one array of 4 tasks
    capsys.readouterr()
    assert main(["status", "--runs-dir", str(tmp_path)]) == 0  # at once: every run shows its job
    lines = [line for line in capsys.readouterr().out.splitlines() if "[job " in line]
    assert len(lines) == 4 and all(line.split()[0] in ("submitted", "queued", "running", "done") for line in lines)
    store = RunStore(tmp_path)
    wait_for(lambda: all(run.status() == "done" for run in store.runs()), "the array to finish training")
    # a job evaluates its run after training (AA here), so the table waits for the jobs, not the runs
    wait_for(lambda: all(job_state(job["job_id"]) == "COMPLETED" for job in jobs), "the array's jobs to end")
    capsys.readouterr()
    assert main(["status", "--runs-dir", str(tmp_path)]) == 0
    status = capsys.readouterr().out
    assert status.count("done ") == 4 and all(job["log"] in status for job in jobs)
    assert main(["table", "table1_bilaw", "--profile", "smoke", "--runs-dir", str(tmp_path), "--out", str(tmp_path)]) == 0
    assert "12 of 144 cells measured" in (tmp_path / "smoke" / "table1_bilaw.md").read_text()
    print(f"submission took {submitted:.1f} s; array finished {time.time() - began:.1f} s after `bench run`")


def test_a_requeued_job_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path, cluster):
    cfg = RunConfig(method="pgd_at", **{**TINY, "epochs": 4, "train_limit": 8192, "attack_steps": 3})
    interrupted, uninterrupted = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    for store in (interrupted, uninterrupted):
        planned = PlannedRun("r", cfg, evaluation=CLEAN, selection=LAST)
        assert SubmititExecutor("slurm", cluster).run([planned], store) == 0
    run = interrupted.run_dir(cfg)
    job_id = last_job(run.path)["job_id"]
    wait_for(lambda: run.epochs_done() >= 1, "the first finished epoch", poll=0.2)
    assert run.epochs_done() < cfg.epochs, "the run finished before it could be interrupted: make it longer"
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    for store in (interrupted, uninterrupted):
        wait_for(lambda: store.run_dir(cfg).status() == "done", "both runs to finish")
    wait_for(lambda: job_state(job_id) == "COMPLETED", "SLURM to record the requeued job as completed")
    log = Path(last_job(run.path)["log"]).read_text()
    starts = [line for line in log.splitlines() if ": starting at epoch" in line]
    assert len(starts) == 2 and starts[0].split("starting at epoch ")[1].startswith("0")
    assert int(starts[1].split("starting at epoch ")[1].split()[0]) >= 1  # resumed, not restarted
    assert [r["epoch"] for r in run.records()] == [0, 1, 2, 3]
    a, b = (load_checkpoint(s.run_dir(cfg).last_ckpt)["model"] for s in (interrupted, uninterrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = (EvaluatedRun(s.run_dir(cfg), CLEAN, LAST).summary()["checkpoints"] for s in (interrupted, uninterrupted))
    assert a == b and a["last"] is not None


def test_a_failing_run_is_reported_with_its_log_and_resubmitted(tmp_path, cluster, capsys):
    store = RunStore(tmp_path)
    helper = PlannedRun("helper", RunConfig(method="natural", **TINY), evaluation=CLEAN, selection=LAST)
    hat = PlannedRun("hat", RunConfig(method="hat", hp=(("helper", helper.config.run_id()),), **TINY),
                     evaluation=CLEAN, selection=LAST)
    assert SubmititExecutor("slurm", cluster).run([hat], store) == 0  # its helper is not trained yet: it raises
    first = last_job(store.run_dir(hat.config).path)
    wait_for(lambda: job_state(first["job_id"]) == "FAILED", "the job to fail")
    capsys.readouterr()
    main(["status", "--runs-dir", str(tmp_path)])
    status = capsys.readouterr().out
    assert "failed" in status and first["log"] in status and "does not exist" in status
    assert "does not exist" in Path(first["log"]).read_text()
    train_run(helper.config, store.run_dir(helper.config), evaluation=CLEAN, selection=LAST)
    todo = missing([hat], store)
    assert todo == [hat]
    assert SubmititExecutor("slurm", cluster).run(todo, store) == 0
    second = last_job(store.run_dir(hat.config).path)
    assert second["job_id"] != first["job_id"]
    wait_for(lambda: store.run_dir(hat.config).status() == "done", "the resubmitted run to finish")


def test_two_concurrent_bench_runs_submit_each_run_once(tmp_path):
    command = [sys.executable, "-m", "bench", "run", "table1_bilaw", "--profile", "smoke", "--methods", "natural",
               "--datasets", "fmnist", "--models", "tiny-cnn", "--executor", "slurm", "--cluster", "local",
               "--runs-dir", str(tmp_path)]  # 2 runs: ℓ∞ and ℓ2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    calls = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [call.communicate(timeout=TIMEOUT) for call in calls]
    assert [call.returncode for call in calls] == [0, 0], outputs
    assert len(jobs_of(tmp_path)) == 2 and len({job["run"] for job in jobs_of(tmp_path)}) == 2  # one job per run
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert third.returncode == 0 and len(jobs_of(tmp_path)) == 2  # queued, running or done: nothing resubmitted
    subprocess.run(["scancel", *{job["job_id"].split("_")[0] for job in jobs_of(tmp_path)}], check=False)


def jobs_of(store_root: Path) -> list[dict]:
    return [json.loads(line) for path in store_root.iterdir() if (path / "jobs.jsonl").exists()
            for line in (path / "jobs.jsonl").read_text().splitlines()]
