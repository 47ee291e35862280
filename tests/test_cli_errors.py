"""The command line's defects of issue 15, each now a clear error (exit 2) naming the bad value and what is
allowed, before anything is trained or any folder is made; and help text that explains every flag."""
import argparse

import pytest
import torch

from bench.cli import build_parser, main


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--epochs", "1", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "--device cuda: this machine has 0 CUDA GPU(s) visible to torch; use --device cpu" in _err(capsys)
    assert not (tmp_path / "runs").exists()
    assert main(["run", "table1_bilaw", "--dry-run", "--device", "cuda:1", "--runs-dir", str(tmp_path)]) == 2
    assert main(["train", "--device", "gpu", "--runs-dir", str(tmp_path)]) == 2
    assert "--device 'gpu': not a device; use auto, cpu, cuda or cuda:N" in _err(capsys)


def test_unknown_eval_attack_is_named_not_blamed_on_select(tmp_path, capsys):
    assert main(["train", "--eval-attacks", "clean,pgd7", "--runs-dir", str(tmp_path)]) == 2
    err = _err(capsys)
    assert "--eval-attacks: unknown evaluation attack 'pgd7'. Did you mean 'pgd20'?" in err and "select" not in err
    assert main(["train", "--final-attacks", "clean,autoattack", "--runs-dir", str(tmp_path)]) == 2
    assert "--final-attacks: unknown evaluation attack 'autoattack'" in _err(capsys)


@pytest.mark.parametrize("flag, value, have", [
    ("--models", "resnet18", "fc1, tiny-cnn"),
    ("--datasets", "cifar10", "fmnist, mnist"),
    ("--methods", "trades", "bilaw, gairat, mail_at, natural, pgd_at, wmmr"),
    ("--seeds", "7", "0"),
    ("--norms", "linfty", "l2, linf"),
])
def test_run_filters_are_checked_against_the_grid(flag, value, have, tmp_path, capsys):
    assert main(["run", "table1_bilaw", flag, value, "--dry-run", "--runs-dir", str(tmp_path)]) == 2
    assert f"{flag} {value}: no run of table1_bilaw [fast] has it; its runs have: {have}" in _err(capsys)


def test_norms_filter_keeps_one_threat_model(tmp_path, capsys):
    assert main(["run", "table1_bilaw", "--profile", "smoke", "--dry-run", "--methods", "natural", "--datasets",
                 "fmnist", "--norms", "linf", "--runs-dir", str(tmp_path)]) == 0
    runs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  new ")]
    assert len(runs) == 2 and all("/linf/" in line for line in runs)  # Tiny-CNN and FC1, ℓ∞ only


def test_dry_run_checks_the_cluster_profile_and_executor(tmp_path, capsys):
    assert main(["run", "table1_bilaw", "--dry-run", "--executor", "slurm", "--cluster", "nope",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "no cluster profile 'nope'" in _err(capsys)
    assert main(["run", "table1_bilaw", "--dry-run", "--executor", "slurm", "--runs-dir", str(tmp_path)]) == 2
    assert "--executor slurm needs --cluster NAME" in _err(capsys)
    assert main(["run", "table1_bilaw", "--dry-run", "--cluster", "local", "--runs-dir", str(tmp_path)]) == 2
    assert "--cluster local applies to --executor slurm" in _err(capsys)


def test_dry_run_shows_runs_of_absent_datasets_as_data_absent_and_where_to_put_them(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BENCH_FMNIST_DIR", raising=False)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["run", "table1_bilaw", "--profile", "smoke", "--dry-run", "--methods", "natural", "--models",
                 "tiny-cnn", "--data-root", str(empty), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "4 runs; 2 data absent, 2 new" in out  # MNIST absent from the empty root; F-MNIST from Debian's package
    assert out.count("  data absent   MNIST/Tiny-CNN/") == 2 and out.count("  new           F-MNIST/Tiny-CNN/") == 2
    assert f"data absent: dataset 'mnist' not found; looked in: {empty}/MNIST/raw. Put the four MNIST IDX files" in out


def _train_actions() -> list[argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices["train"]._actions if a.option_strings and a.dest != "help"]


def test_every_train_flag_has_help_and_milestones_one_default():
    undocumented = [a.option_strings[0] for a in _train_actions() if not a.help]
    assert undocumented == []
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["train"].format_help().split())
    milestones = text[text.index("--milestones [MILESTONES ...] piecewise"):text.index("--gamma GAMMA piecewise")]
    assert milestones.count("default") == 1 and "[]" not in milestones


def test_no_help_text_points_at_the_spec_users_do_not_have():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert "spec" not in command.format_help().lower(), name


@pytest.mark.parametrize("flags, named, allowed", [
    (["--eps", "-1"], "--eps: eps=-1.0", "None (the dataset's default) or a number in (0, 1]"),
    (["--eps", "0"], "--eps: eps=0.0", "None (the dataset's default) or a number in (0, 1]"),
    (["--eps", "nan"], "--eps: eps='nan'", "a finite float"),
    (["--eps", "1e9"], "--eps: eps=1000000000.0", "None (the dataset's default) or a number in (0, 1]"),
    (["--norm", "l2", "--eps", "1e9"], "--eps: eps=1000000000.0", "None (the dataset's default) or a number in (0, 28]"),
    (["--lr", "-1"], "--lr: lr=-1.0", "a finite number ≥ 0"),
    (["--lr", "nan"], "--lr: lr='nan'", "a finite float"),
    (["--momentum", "-5"], "--momentum: momentum=-5.0", "a number in [0, 1]"),
    (["--weight-decay=-1e-4"], "--weight-decay: weight_decay=-0.0001", "a number ≥ 0"),
    (["--seed", "-1"], "--seed: seed=-1", "an integer ≥ 0"),
    (["--seed", "1.5"], "--seed: seed='1.5'", "an integer"),
    (["--step-size", "-0.5"], "--step-size: step_size=-0.5", "a number > 0"),
    (["--milestones", "-5"], "--milestones: milestones=(-5,)", "epochs ≥ 1"),
    (["--final-attacks", ""], "--final-attacks: an evaluation needs at least one attack", "a non-empty list"),
    (["--method", "trades", "--hp", "beta=-1"], "hp beta=-1.0", "a number ≥ 0"),
    (["--method", "caat", "--hp", "meta_every=-1"], "hp meta_every=-1", "an integer ≥ 1, or 0 for the fidelity's"),
    (["--method", "caat", "--hp", "hidden=1.5"], "hp hidden='1.5'", "an integer"),
    (["--method", "caat", "--hp", "hidden=abc"], "hp hidden='abc' is not a number", "an int"),
    (["--method", "caat", "--hp", "record_samples=maybe"], "hp record_samples='maybe'", "true/false"),
    (["--method", "trades+ema", "--hp", "ema.decay=1"], "hp ema.decay=1.0", "a number in [0, 1)"),
    (["--train-limit", "100000"], "--train-limit: train_limit=100000", "1..60000"),
])
def test_bad_values_are_refused_before_anything_is_written(flags, named, allowed, tmp_path, capsys):
    """Issue 12: each bad value is refused with the field, the value and what is allowed, before a run folder
    (and so a lease) exists."""
    runs = tmp_path / "runs"
    assert main(["train", *flags, "--epochs", "1", "--runs-dir", str(runs)]) == 2
    err = _err(capsys)
    assert named in err and f"allowed: {allowed}" in err and "Traceback" not in err
    assert not runs.exists()


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_runs_dir_that_is_a_file_is_one_clear_error(below, tmp_path, capsys):
    file = tmp_path / "runs"
    file.write_text("not a folder")
    assert main(["train", "--epochs", "1", "--runs-dir", str(file / below)]) == 2
    assert f"{file} is a file; allowed: a folder (made if missing)" in _err(capsys)
    assert file.read_text() == "not a folder"
