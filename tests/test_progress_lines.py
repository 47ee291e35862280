"""Progress a person can follow where no terminal is attached (a SLURM log, a pipe, CI): one plain line per
epoch from the training loop and one per run from the local executor, on stderr."""
import re

from bench.config import RunConfig
from bench.executors import LocalExecutor
from bench.experiments.base import PlannedRun
from bench.store import RunStore
from bench.eval_store import Evaluation
from bench.train import train_run
from bench.training.assemble import Runtime

TINY = dict(method="natural", dataset="fmnist", model="tiny-cnn", epochs=2, train_limit=256, attack_steps=1,
            eval_attacks=("clean", "pgd20"), eval_n=32)
EPOCH_LINE = re.compile(r"epoch (\d)/2: loss \d+\.\d{4}, lr 0\.0?1, train acc \d+\.\d%, clean \d+\.\d% \(worst class "
                        r"\d+\.\d%\), pgd20 \d+\.\d% \(worst class \d+\.\d%\), \d+\.\d s/epoch, ETA \d:\d\d:\d\d$")


def test_training_prints_one_line_per_epoch_without_a_terminal(tmp_path, capsys):
    cfg = RunConfig(**TINY)
    run = RunStore(tmp_path).run_dir(cfg)
    train_run(cfg, run)
    lines = [line for line in capsys.readouterr().err.splitlines() if " epoch " in line]
    assert [EPOCH_LINE.search(line).group(1) for line in lines] == ["1", "2"]
    assert all(line.startswith(run.path.name) for line in lines) and lines[-1].endswith("ETA 0:00:00")


def test_local_executor_prints_a_line_as_each_run_starts_and_ends(tmp_path, capsys):
    clean = Evaluation(("clean",), n=64)
    plan = [PlannedRun("a", RunConfig(**{**TINY, "epochs": 1}), evaluation=clean),
            PlannedRun("b", RunConfig(**{**TINY, "epochs": 1, "seed": 1}), evaluation=clean)]
    assert LocalExecutor(Runtime()).run(plan, RunStore(tmp_path)) == 0
    err = capsys.readouterr().err
    assert re.search(r"\[run 1/2\] a: training natural_fmnist_tiny-cnn_s0-\w+ \(1 epochs\)", err)
    assert re.search(r"\[run 2/2\] b: done in 0:\d\d:\d\d; best checkpoint \(epoch 1\): clean \d+\.\d%", err)
    assert LocalExecutor(Runtime()).run(plan[:1], RunStore(tmp_path)) == 0  # done: its evaluation is reused
    assert re.search(r"\[run 1/1\] a: evaluating natural_fmnist_tiny-cnn_s0-\w+\n", capsys.readouterr().err)


def test_epoch_lines_show_the_held_out_sets_training_monitors(tmp_path, capsys):
    from bench.data.scenarios import ScenarioConfig

    cfg = RunConfig(**{**TINY, "epochs": 1, "eval_attacks": ("clean",), "monitor_on": ("val",)},
                    scenario=ScenarioConfig(heldout="cfa_val"))
    train_run(cfg, RunStore(tmp_path).run_dir(cfg))
    line = next(line for line in capsys.readouterr().err.splitlines() if " epoch 1/1" in line)
    assert re.search(r"clean on val \d+\.\d% \(worst class \d+\.\d%\)", line)
    assert not re.search(r", clean \d", line)  # the test set is not monitored
