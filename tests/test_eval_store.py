"""Evaluations as keyed artifacts: adding an attack evaluates the stored checkpoints without touching the weights
or retraining, a second request reuses the file, a killed evaluation resumes per attack, and tables plan
evaluation jobs for finished runs."""
import hashlib
import json

import pytest

import bench.eval_store as eval_store
from bench.cli import main
from bench.config import RunConfig
from bench.data.scenarios import ScenarioConfig
from bench.cost import forward_flops, run_cost
from bench.eval_store import EvalKey, EvaluatedRun, Evaluation, attack_spec, run_evaluation
from bench.executors import LocalExecutor
from bench.experiments.base import Cell, PlannedRun
from bench.experiments.grid import missing, states
from bench.experiments.stats import STATS
from bench.selection import Best, Last
from bench.store import RunStore
from bench.train import train_run
from bench.training.assemble import Runtime

CFG = RunConfig(method="pgd_at+ema", hp=(("ema.start_epoch", "1"),), dataset="fmnist", model="tiny-cnn", epochs=2,
                train_limit=256, batch_size=64, attack_steps=1, eval_attacks=("clean", "pgd20"), eval_n=32)
CLEAN = Evaluation(("clean",), n=64)


@pytest.fixture
def finished(tmp_path):
    store = RunStore(tmp_path)
    run = store.run_dir(CFG)
    train_run(CFG, run, evaluation=CLEAN)
    return store, run


def _weights(run):
    files = sorted([run.last_ckpt, *run.checkpoints_dir.iterdir()])
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


def test_adding_an_attack_evaluates_stored_checkpoints_only_and_is_reused(finished, monkeypatch):
    store, run = finished
    weights, records = _weights(run), run.records_file.read_text()
    wider = Evaluation(("clean", "pgd20"), n=64)
    summary = run_evaluation(run, wider, Best(), Runtime())
    assert _weights(run) == weights and run.records_file.read_text() == records  # never trained, never rewritten
    assert set(summary["checkpoints"]) == {"best", "last", "best_ema", "last_ema"}
    assert all(set(ev["attacks"]) == {"clean", "pgd20"} for ev in summary["checkpoints"].values())
    assert all("error_triple" in ev for ev in summary["checkpoints"].values())  # from the stored hits
    files = {p: p.stat().st_mtime_ns for p in run.evals_dir.rglob("*.json")}

    def fail(*args, **kwargs):
        raise AssertionError("evaluated again instead of reusing the artifact")
    monkeypatch.setattr(eval_store, "attack_hits", fail)
    assert run_evaluation(run, wider, Best(), Runtime()) == summary
    assert {p: p.stat().st_mtime_ns for p in run.evals_dir.rglob("*.json")} == files


def test_the_key_holds_the_whole_attack_spec():
    a = EvalKey(eval_store.Checkpoint("", 1), attack_spec(CFG, Evaluation(("pgd20",), n=64), "pgd20"), 0)
    for other in (Evaluation(("pgd20",), n=65), Evaluation(("pgd20",), n=64, eps=0.2),
                  Evaluation(("pgd20",), n=64, norm="l2", eps=1.0)):
        b = EvalKey(a.checkpoint, attack_spec(CFG, other, "pgd20"), 0)
        assert a.digest() != b.digest()
    assert a.digest() != EvalKey(a.checkpoint, a.spec, 1).digest()  # the seed of the random starts
    assert a.digest() == EvalKey(a.checkpoint, attack_spec(CFG, Evaluation(("pgd20", "clean"), n=64), "pgd20"), 0).digest()


def test_a_killed_evaluation_resumes_per_attack(finished, monkeypatch):
    store, run = finished
    calls = []
    real = eval_store.attack_hits

    def killed_on_second(*args, **kwargs):
        calls.append(args[3].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(eval_store, "attack_hits", killed_on_second)
    evaluation = Evaluation(("pgd20", "pgd10"), n=32, checkpoints=("last",))
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(run, evaluation, Best(), Runtime())
    calls.clear()
    monkeypatch.setattr(eval_store, "attack_hits", lambda *a, **k: calls.append(a[3].name) or real(*a, **k))
    run_evaluation(run, evaluation, Best(), Runtime())
    assert calls == ["pgd10", "pgd20", "pgd10"]  # last's pgd20 was stored before the kill; then last_ema's two


def test_a_table_plans_an_evaluation_job_for_a_finished_run_and_reads_the_cell(finished):
    store, run = finished
    planned = [PlannedRun("AT", CFG, evaluation=Evaluation(("clean", "pgd20"), n=64), selection=Best())]
    assert missing(planned, store) == planned and states(planned, store)[run.path.name] == "to evaluate"
    flops = forward_flops(CFG.model, CFG.dataset)
    evaluating, training = (run_cost(CFG, flops, planned[0].evaluation, trained) for trained in (True, False))
    assert 0 < evaluating.flops < training.flops  # an evaluation job is not priced as a retraining
    view = EvaluatedRun(run, planned[0].evaluation, planned[0].selection)
    assert STATS.get("acc")(view, Cell("r", "c", "AT", "best_ema", "pgd20")) is None  # not evaluated yet
    weights = _weights(run)
    assert LocalExecutor(Runtime()).run(missing(planned, store), store) == 0
    assert _weights(run) == weights and missing(planned, store) == []
    assert states(planned, store)[run.path.name] == "done"
    view = EvaluatedRun(run, planned[0].evaluation, planned[0].selection)
    measured = STATS.get("acc")(view, Cell("r", "c", "AT", "best_ema", "pgd20"))
    assert measured.value == view.checkpoint("best_ema")["attacks"]["pgd20"]["acc"] and measured.se > 0


def test_bench_eval_takes_any_kept_checkpoint_budget_and_subset(finished, capsys):
    store, run = finished
    runs = ["--runs-dir", str(store.root)]
    assert main([*runs, "eval", run.path.name[:12], "--checkpoint", "last_ema", "--attacks", "pgd10",
                 "--eps", "0.2", "--n", "16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "last_ema (epoch 2)" in out and "n=16" in out
    saved = list(run.evals_dir.glob("ema-e0001/pgd10-*.json"))
    assert len(saved) == 1 and '"eps": 0.2' in saved[0].read_text()
    assert main([*runs, "eval", run.path.name, "--checkpoint", "model@e0", "--attacks", "clean", "--n", "16",
                 "--device", "cpu"]) == 0
    assert list(run.evals_dir.glob("model-e0000/clean-*.json"))
    assert main([*runs, "eval", run.path.name, "--checkpoint", "worst", "--device", "cpu"]) == 2
    assert "checkpoint 'worst': use best, last, best_<series>" in capsys.readouterr().err
    assert main([*runs, "eval", run.path.name, "--checkpoint", "model@e7", "--device", "cpu"]) == 2
    assert "checkpoint model@e7 is not kept" in capsys.readouterr().err


def test_a_run_trained_before_evaluation_left_the_config_still_reads(finished, capsys):
    store, run = finished
    saved = json.loads(run.config_file.read_text())
    saved["config"].update(final_attacks=["clean", "aa"], aa_n=1000, final_n=None, select="pgd20",
                           select_score="acc", select_after=0.0)
    run.config_file.write_text(json.dumps(saved))
    assert run.config() == CFG
    assert main(["--runs-dir", str(store.root), "status"]) == 0 and "1 done" in capsys.readouterr().out


def test_eval_best_under_a_rule_the_run_did_not_record_names_the_rule_to_give(tmp_path, capsys):
    """A run that early-stops on a held-out split (BiLAW's val_stop) has no PGD-20 record on test images: the
    default `--rule` is refused with the rule that fits, not reported as "not evaluated"."""
    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", epochs=1, train_limit=2256, batch_size=64,
                    attack_steps=1, eval_attacks=("clean", "pgd20"), eval_n=32, monitor_on=("val_stop",),
                    scenario=ScenarioConfig(heldout="bilaw"))
    store = RunStore(tmp_path)
    run = store.run_dir(cfg)
    train_run(cfg, run, evaluation=CLEAN, selection=Last())
    runs = ["--runs-dir", str(tmp_path)]
    before = sorted(run.evals_dir.rglob("*.json"))
    assert main([*runs, "eval", run.path.name, "--attacks", "clean", "--n", "16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "set 'test' is not monitored" in err and "give --rule best:on=val_stop" in err
    assert sorted(run.evals_dir.rglob("*.json")) == before  # refused before evaluating anything
    assert main([*runs, "eval", run.path.name, "--rule", "best:on=val_stop", "--attacks", "clean", "--n", "16",
                 "--device", "cpu"]) == 0
    assert "not evaluated" not in capsys.readouterr().out


def test_the_rule_named_for_a_table_run_is_the_one_its_table_selects_with():
    from bench.cli_eval import declared_rules
    from bench.papers import EXPERIMENTS

    bilaw = next(run for run in EXPERIMENTS.get("table1_bilaw").runs("fast") if run.key == "F-MNIST/Tiny-CNN/linf/BiLAW(ours)")
    assert declared_rules(bilaw.config.run_id()) == {"best:on=val_stop": "table1_bilaw"}
    assert declared_rules("no-such-run") == {}
