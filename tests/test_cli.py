"""The command line refuses bad input with the valid choices, and lists what exists."""
import pytest

from bench.cli import main


@pytest.mark.parametrize("flag,bad,good", [
    ("--method", "trade", "trades"),
    ("--dataset", "fmnst", "fmnist"),
    ("--model", "tiny_cnn", "tiny-cnn"),
    ("--schedule", "piecewize", "piecewise"),
])
def test_unknown_names_are_refused_with_a_suggestion(flag, bad, good, capsys, tmp_path):
    code = main(["--runs-dir", str(tmp_path), "train", flag, bad, "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"'{bad}'" in err and f"Did you mean '{good}'?" in err
    assert not any(tmp_path.iterdir()), "a refused run must not create a run folder"


def test_bad_hyperparameter_is_refused(capsys, tmp_path):
    assert main(["--runs-dir", str(tmp_path), "train", "--method", "trades", "--hp", "bta=6"]) == 2
    assert "unknown hyperparameter(s) ['bta']" in capsys.readouterr().err


def test_unknown_eval_attack_is_refused(capsys, tmp_path):
    assert main(["--runs-dir", str(tmp_path), "train", "--eval-attacks", "clean,pgd21"]) == 2
    assert "'pgd21'" in capsys.readouterr().err


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("methods:", "trades", "datasets:", "cifar10-jpeg", "models:", "wrn-34-10", "attacks:", "aa"):
        assert word in out
    caat = next(line for line in out.splitlines() if line.split()[:1] == ["caat"])
    assert caat.endswith("[uses --heldout caat_meta]")


def test_list_experiments_names_every_table_and_figure(capsys):
    from bench.papers import EXPERIMENTS, FIGURES

    assert main(["list", "experiments"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed == set(EXPERIMENTS) | set(FIGURES) and {"table1_bilaw", "fig4_cfa"} <= listed


def test_train_fills_in_the_held_out_split_a_method_needs():
    from bench.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--method", "at+cfa"])
    cfg = config_from_args(args)
    assert cfg.method == "pgd_at+cfa" and cfg.scenario.heldout == "cfa_val"
    given = config_from_args(build_parser().parse_args(["train", "--method", "caat", "--heldout", "frl_meta"]))
    assert given.scenario.heldout == "frl_meta"


def test_status_of_an_empty_store(capsys, tmp_path):
    assert main(["--runs-dir", str(tmp_path), "status"]) == 0
    assert "no runs" in capsys.readouterr().out


def test_train_status_eval_round_trip(capsys, tmp_path):
    runs = ["--runs-dir", str(tmp_path)]
    small = ["--method", "pgd_at", "--dataset", "fmnist", "--model", "tiny-cnn", "--epochs", "1", "--train-limit", "256",
             "--attack-steps", "1", "--eval-n", "64", "--final-attacks", "clean"]
    assert main(["train", *small, *runs]) == 0  # --runs-dir may also follow the command
    out = capsys.readouterr().out
    assert "last (epoch 1)     clean" in out and "n=10000" in out
    assert main([*runs, "status"]) == 0
    out = capsys.readouterr().out
    assert "done" in out and "1/1" in out and "1 done" in out
    run_id = next(tmp_path.iterdir()).name
    assert main([*runs, "eval", run_id[:12], "--checkpoint", "last", "--attacks", "clean,pgd10"]) == 0
    assert "pgd10" in capsys.readouterr().out
    assert len(list((tmp_path / run_id / "evals" / "model-e0000").glob("pgd10-*.json"))) == 1
