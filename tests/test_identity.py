"""Canonical typed identity (issue 12): equal trainings share one run id, whatever the spelling of a value,
and placeholder defaults are resolved before hashing and recorded in config.json."""
import dataclasses
import json

import pytest

from bench.cli import build_parser, config_from_args, main
from bench.config import RunConfig
from methods import resolved_hparams


def _cli(*flags: str) -> RunConfig:
    return config_from_args(build_parser().parse_args(["train", *flags]))


def test_spellings_of_one_hyperparameter_value_and_the_default_give_one_run_id():
    ids = {_cli("--method", "trades", "--hp", f"beta={v}").run_id() for v in ("6", "6.0", "6e0", "06")}
    ids |= {_cli("--method", "trades").run_id(), RunConfig(method="trades", hp=(("beta", 6),)).run_id()}
    assert len(ids) == 1
    assert RunConfig(method="trades", hp=(("beta", "6"),)).hp == ()  # equal to the default: dropped
    assert RunConfig(method="trades", hp=(("beta", "1"),)).run_id() not in ids


def test_add_on_hyperparameters_are_canonical_too():
    plain = RunConfig(method="trades+ema").run_id()
    assert RunConfig(method="trades+ema", hp=(("ema.decay", "0.85"), ("ema.start_epoch", "5e1"))).run_id() == plain
    assert RunConfig(method="trades+ema", hp=(("ema.decay", "0.88"),)).run_id() != plain


def test_float_fields_given_as_ints_and_aliases_give_one_run_id():
    assert RunConfig(lr=1, gamma=1, eps=1 / 8).run_id() == RunConfig(lr=1.0, gamma=1.0, eps=0.125).run_id()
    assert _cli("--lr", "1", "--milestones", "3", "6").run_id() == RunConfig(lr=1.0, milestones=(3, 6)).run_id()
    assert _cli("--milestones", "3,6").milestones == (3, 6)
    assert RunConfig(scenario={"imbalance": 10}).run_id() == RunConfig(scenario={"imbalance": 10.0}).run_id()
    assert RunConfig(method="at+cfa").run_id() == RunConfig(method="pgd_at+cfa").run_id()


def test_a_stored_config_with_string_values_reads_back_to_the_same_identity():
    cfg = RunConfig(method="mail_at", hp=(("bias", 0.05), ("slope", 5)), milestones=(2, 3))
    stored = json.loads(json.dumps(cfg.to_dict()))
    stored["hp"] = [["bias", "0.05"], ["slope", "5"]]
    assert RunConfig.from_dict(stored) == cfg and RunConfig.from_dict(stored).run_id() == cfg.run_id()


@pytest.mark.parametrize("method, fidelity, given, resolved", [
    ("caat", "paper", {"meta_every": "1", "train_eps_scale": "1"}, {"meta_every": 1, "train_eps_scale": 1.0}),
    ("caat", "code", {"meta_every": "50", "train_eps_scale": "1.25"}, {"meta_every": 50, "train_eps_scale": 1.25}),
    ("trades+cfa", "code", {"cfa.lam1": "0.3", "cfa.class_acc": "code"}, {"cfa.lam1": 0.3, "cfa.class_acc": "code"}),
    ("pgd_at+ccm", "paper", {"ccm.lam1": "0.5", "ccm.class_acc": "paper"}, {"ccm.lam1": 0.5, "ccm.class_acc": "paper"}),
    ("bilaw", "paper", {"val_attack_steps": "10", "meta_weight_decay": "0"},
     {"val_attack_steps": 10, "meta_weight_decay": 0.0}),
    ("gradalign", "code", {"clean_grad": "code", "lam": "0.2"}, {"clean_grad": "code", "lam": 0.2}),
])
def test_placeholder_defaults_resolve_before_hashing(method, fidelity, given, resolved):
    """The default and the value it stands for in this run are one training, hence one id (fmnist ε = 0.1:
    GradAlign's official λ for it is 0.2)."""
    default = RunConfig(method=method, fidelity=fidelity)
    explicit = RunConfig(method=method, fidelity=fidelity, hp=tuple(given.items()))
    assert default.run_id() == explicit.run_id()
    assert {k: default.hp_dict[k] for k in resolved} == resolved


def test_a_placeholder_follows_the_fields_it_depends_on():
    paper = RunConfig(method="caat")
    code = RunConfig(method="caat", fidelity="code")
    assert paper.hp_dict["meta_every"] == 1 and code.hp_dict["meta_every"] == 50
    assert dataclasses.replace(paper, fidelity="code").hp_dict == code.hp_dict  # hp keeps the placeholder
    steps = RunConfig(method="bilaw", attack_steps=3)
    assert steps.hp_dict["val_attack_steps"] == 3


def test_config_json_records_the_resolved_hyperparameters(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--method", "gradalign", "--fidelity", "code", "--epochs", "1", "--train-limit", "64",
                 "--batch-size", "32", "--eval-n", "16", "--final-attacks", "clean", "--eval-attacks", "clean",
                 "--rule", "best:attack=clean", "--final-n", "16", "--device", "cpu", "--runs-dir", str(runs)]) == 0
    (run,) = runs.iterdir()
    record = json.loads((run / "config.json").read_text())
    assert (record["method_hparams"]["lam"], record["method_hparams"]["clean_grad"]) == (0.2, "code")
    assert run.name == RunConfig.from_dict(record["config"]).run_id()
    assert resolved_hparams("gradalign", {"lam": 0.2, "clean_grad": "code"}) == record["method_hparams"]
