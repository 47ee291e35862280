"""The common submission path without a cluster: leases keep two callers off one run, the debug executor
(submitit in-process) trains what is missing and records its jobs, failures are reported and retried."""
import json
import math
import os
import socket
import time

from bench.config import RunConfig
from bench.executors import LocalExecutor, SubmititExecutor
from bench.executors.cluster import ClusterProfile, load_cluster
from bench.experiments.base import PlannedRun
from bench.experiments.grid import missing
from bench.lease import Lease, RunLease, is_live, last_job
from bench.store import RunStore
from bench.eval_store import Evaluation
from bench.selection import Last
from bench.training.assemble import Runtime

import pytest

TINY = dict(dataset="fmnist", model="tiny-cnn", train_limit=128, epochs=1, attack_steps=1,
            eval_attacks=("clean",), eval_n=32)


def planned(*methods: str, **changes) -> list[PlannedRun]:
    return [PlannedRun(m, RunConfig(method=m, **{**TINY, **changes}), evaluation=Evaluation(("clean",), n=64),
                       selection=Last()) for m in methods]


def test_a_lease_is_exclusive_until_its_holder_is_gone(tmp_path):
    lease = RunLease(tmp_path)
    assert lease.acquire("local", 1)
    assert not RunLease(tmp_path).acquire("local", 1)  # this process is alive
    stale = {**json.loads(lease.path.read_text()), "pid": 2 ** 22 + 12345}  # no such process
    lease.path.write_text(json.dumps(stale))
    assert RunLease(tmp_path).acquire("local", 1) and lease.read().pid == os.getpid()


def test_slurm_leases_follow_the_job_state_and_expire_when_it_is_unknown():
    now = time.time()
    lease = Lease("slurm", "elsewhere", 1, now - 10, now + 100, job_id="42_3")
    assert is_live(lease, now, {"42_3": "PENDING"}.get)
    assert not is_live(lease, now, {"42_3": "CANCELLED"}.get)
    assert is_live(lease, now, lambda _: None)  # SLURM cannot be asked: until it expires
    assert not is_live(lease, now + 101, lambda _: None)
    submitting = Lease("slurm", socket.gethostname(), 1, now, now + 100)  # no job id yet
    assert is_live(submitting, now + 60, lambda _: None) and not is_live(submitting, now + 3600, lambda _: None)


def test_debug_executor_trains_missing_runs_and_records_jobs(tmp_path, capsys):
    store = RunStore(tmp_path)
    plan = planned("natural", "pgd_at")
    assert SubmititExecutor("debug", ClusterProfile("debug")).run(missing(plan, store), store) == 0
    for run in plan:
        run_dir = store.run_dir(run.config)
        assert run_dir.status() == "done" and not RunLease(run_dir.path).path.exists()
        job = last_job(run_dir.path)
        assert job["executor"] == "debug" and job["run"] == run_dir.path.name
    submissions = list((tmp_path / "_submissions").glob("*.json"))
    assert len(submissions) == 1 and len(json.loads(submissions[0].read_text())) == 2
    assert missing(plan, store) == []


def test_a_failing_run_is_reported_failed_and_retried(tmp_path, capsys):
    store = RunStore(tmp_path)
    hat = planned("hat", hp=(("helper", "no-such-run"),))
    assert SubmititExecutor("debug", ClusterProfile("debug")).run(missing(hat, store), store) == 1
    run_dir = store.run_dir(hat[0].config)
    assert run_dir.status() == "failed" and "no-such-run" in run_dir.error_file.read_text()
    assert "failed" in capsys.readouterr().err
    assert missing(hat, store) == hat  # the next `bench run` submits it again, and is not kept off by a lease
    assert SubmititExecutor("debug", ClusterProfile("debug")).run(missing(hat, store), store) == 1
    assert len((run_dir.path / "jobs.jsonl").read_text().splitlines()) == 2


def test_local_executor_skips_a_run_someone_else_holds(tmp_path, capsys):
    store = RunStore(tmp_path)
    plan = planned("natural")
    RunLease(store.run_dir(plan[0].config).path).acquire("local", 1)  # held by this (live) process
    assert LocalExecutor(Runtime()).run(plan, store) == 0
    assert store.run_dir(plan[0].config).status() == "new" and "skipped, taken on by" in capsys.readouterr().err


def test_helpers_are_submitted_before_the_runs_that_need_them(tmp_path):
    store = RunStore(tmp_path)
    helper = planned("natural")[0]
    hat = PlannedRun("hat", RunConfig(method="hat", hp=(("helper", helper.config.run_id()),), **TINY),
                     needs=(helper.config.run_id(),), evaluation=helper.evaluation, selection=helper.selection)
    assert missing([hat, helper], store) == [helper, hat]
    assert SubmititExecutor("debug", ClusterProfile("debug")).run(missing([hat, helper], store), store) == 0
    assert store.run_dir(hat.config).status() == "done"


def test_cluster_profiles_load_and_refuse_unknown_keys(tmp_path):
    local = load_cluster("local")
    assert local.partition == "debug" and local.gpus_per_job == 0
    example = load_cluster("example")
    assert example.sbatch_parameters() == {"constraint": "h100"}
    bad = tmp_path / "mine.toml"
    bad.write_text('partition = "gpu"\ngpu_per_job = 2\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['gpu_per_job'\]"):
        load_cluster(str(bad))
    with pytest.raises(FileNotFoundError, match="profiles in .*: example, local"):
        load_cluster("nowhere")


def test_a_derived_time_limit_follows_the_estimate_on_gpu_and_cpu_clusters():
    from bench.cost import forward_flops, run_cost

    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", epochs=10)
    cost = run_cost(cfg, forward_flops(cfg.model, cfg.dataset))
    bounds = dict(time_limit_min=0, min_time_min=1, max_time_min=10_000)
    gpu = SubmititExecutor("slurm", ClusterProfile("gpu", gpus_per_job=1, **bounds))
    cpu = SubmititExecutor("slurm", ClusterProfile("cpu", gpus_per_job=0, cpus_per_job=1, **bounds))
    run = [PlannedRun("r", cfg)]
    assert gpu._minutes(run) == max(1, math.ceil(120 * cost.gpu_hours))
    assert cpu._minutes(run) == math.ceil(120 * cost.cpu_hours * 2) > gpu._minutes(run)  # 1 core: twice 2 cores'
    fixed = SubmititExecutor("slurm", ClusterProfile("fixed", time_limit_min=45))
    assert fixed._minutes(run) == 45
