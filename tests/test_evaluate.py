"""Evaluation: attack specs, side-effect freedom, and real numbers on a trained tiny CNN."""
import dataclasses
import json

import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.data import DATASETS, Split
from bench.evaluate import (EVAL_ATTACKS, AttackSpec, EvalConfig, attack_specs, evaluate,
                            evaluate_tensors)
from bench.registry import UnknownNameError
from bench.store import RunStore
from bench.eval_store import Evaluation
from bench.train import train_run

FMNIST = DATASETS.get("fmnist")
EPS, STEP = FMNIST.default_eps, FMNIST.default_step  # the tiny CNN is trained on Fashion-MNIST


def test_standard_specs():
    specs = dict((s.name, s) for s in attack_specs("clean, pgd20,pgd10,cw,aa", eps=8 / 255, step=2 / 255,
                                                    dataset="cifar10"))
    assert specs["clean"].kind == "clean"
    assert specs["pgd20"] == AttackSpec("pgd20", "pgd", eps=8 / 255, steps=20, step_size=2 / 255, init="uniform")
    assert (specs["pgd10"].steps, specs["pgd10"].step_size) == (10, 2 / 255)
    assert (specs["cw"].kind, specs["cw"].steps, specs["cw"].step_size, specs["cw"].kappa) == ("cw", 40, 0.01, 0.0)
    assert (specs["aa"].kind, specs["aa"].eps, specs["aa"].n) == ("aa", 8 / 255, None)
    assert attack_specs(["cw"], eps=0.1, step=0.01, dataset="fmnist")[0].step_size == 0.01
    assert attack_specs(["cw"], eps=0.3, step=0.05, dataset="mnist")[0].step_size == 0.05  # dataset's step
    assert EVAL_ATTACKS.get("aa")(8 / 255, 2 / 255, "cifar10", n=1000).n == 1000
    assert set(EVAL_ATTACKS.names()) == {"clean", "pgd20", "pgd10", "cw", "aa"}
    with pytest.raises(UnknownNameError, match="pgd20"):
        attack_specs("pgd02", eps=0.1, step=0.01)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="fgsm"), "kind"), (dict(init="zero"), "init"), (dict(restarts=0), "restarts"),
    (dict(n=0), "n=0"), (dict(steps=0), "steps"), (dict(eps=-0.1), "eps"),
    (dict(kind="aa", restarts=2), "restarts"),
])
def test_attack_spec_validation(kwargs, match):
    base = dict(name="x", kind="pgd", eps=0.1, steps=5, step_size=0.01)
    with pytest.raises(ValueError, match=match):
        AttackSpec(**{**base, **kwargs})


def test_eval_config_validation():
    spec = AttackSpec("clean", "clean")
    with pytest.raises(ValueError, match="unique"):
        EvalConfig((spec, spec))
    with pytest.raises(ValueError, match="at least one"):
        EvalConfig(())
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig((spec,), batch_size=0)
    aa = AttackSpec("aa", "aa", eps=0.1)
    cfg = EvalConfig((aa, dataclasses.replace(aa, name="aa100", n=100)), aa_n=32)
    assert [cfg.resolved(s).n for s in cfg.attacks] == [32, 100]  # aa_n only fills an unset n


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.frozen = nn.BatchNorm1d(256)  # a submodule the caller keeps in eval mode inside a training model
        self.head = nn.Linear(256, 10)

    def forward(self, x):
        return self.head(self.frozen(self.body(x)))


def test_evaluation_leaves_weights_buffers_modes_grads_and_rng_untouched():
    torch.manual_seed(0)
    model = _BNNet()
    for _ in range(5):
        model(torch.rand(16, 1, 8, 8))  # non-trivial running statistics
    x = (torch.rand(24, 1, 8, 8) * 255).to(torch.uint8)
    with torch.no_grad():  # labels = the model's own predictions, so every attack has work to do
        y = model.eval()(x.float() / 255).argmax(1)
    model.train()
    model.frozen.eval()
    cfg = EvalConfig(attack_specs("clean,pgd20,cw,aa", eps=0.1, step=0.02), batch_size=10, aa_n=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    rng = torch.get_rng_state()
    with torch.no_grad():  # the caller may well be inside no_grad: the attacks must still work
        result = evaluate_tensors(model, x, y, 10, cfg, "cpu")
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k  # bit for bit, BN running stats and counters included
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert result["attacks"]["aa"]["n"] == 6 and result["attacks"]["pgd20"]["n"] == 24
    assert result["attacks"]["clean"]["acc"] == 1.0
    assert all(result["attacks"][name]["acc"] < 1.0 for name in ("pgd20", "cw", "aa"))  # the attacks ran


def test_bad_images_are_refused():
    model = _BNNet()
    with pytest.raises(ValueError, match="dtype"):
        evaluate_tensors(model, torch.zeros(2, 1, 8, 8, dtype=torch.int32), torch.zeros(2, dtype=torch.long),
                         10, EvalConfig((AttackSpec("clean", "clean"),)), "cpu")
    with pytest.raises(ValueError, match="at least 4 classes"):
        evaluate_tensors(model, torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 3,
                         EvalConfig((AttackSpec("aa", "aa", eps=0.1),)), "cpu")


@pytest.fixture(scope="module")
def tiny(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    return model, x, y


def _cfg(names, eps=EPS, **kwargs):
    return EvalConfig(attack_specs(names, eps=eps, step=STEP, dataset="fmnist"), **kwargs)


def test_trained_model_clean_pgd_triple_and_json(tiny):
    model, x, y = tiny
    result = evaluate_tensors(model, x, y, 10, _cfg("clean,pgd20", batch_size=256), "cpu")
    clean, adv = result["attacks"]["clean"], result["attacks"]["pgd20"]
    assert clean["acc"] > adv["acc"] >= 0.0
    assert clean["acc"] > 0.6  # a trained classifier, so the gap above means something
    for r in (clean, adv):
        assert r["n"] == len(x) and len(r["per_class"]) == 10
        assert r["worst_class_acc"] == min(r["per_class"]) == r["per_class"][r["worst_class"]]
        assert r["worst_class_acc"] <= r["worst20_mean"] <= r["acc"]
    triple = result["error_triple"]
    assert triple["n"] == len(x)
    assert triple["nat"]["avg"] == pytest.approx(1 - clean["acc"])
    assert triple["rob"]["avg"] == pytest.approx(1 - adv["acc"])
    assert triple["bdy"]["avg"] == pytest.approx(clean["acc"] - adv["acc"])
    assert triple["rob"]["worst"] == pytest.approx(1 - adv["worst_class_acc"])
    json.dumps(result, allow_nan=False)
    assert "error_triple" not in evaluate_tensors(model, x[:64], y[:64], 10, _cfg("clean,pgd10"), "cpu")


def test_per_class_mean_equals_overall_on_balanced_subset(tiny):
    model, x, y = tiny
    per = min(int((y == c).sum()) for c in range(10))
    idx = torch.cat([torch.nonzero(y == c).flatten()[:per] for c in range(10)])
    result = evaluate_tensors(model, x[idx], y[idx], 10, _cfg("clean,pgd10"), "cpu")
    for r in result["attacks"].values():
        assert r["n"] == 10 * per
        assert sum(r["per_class"]) / 10 == pytest.approx(r["acc"])


def test_deterministic_and_split_wrapper_matches(tiny):
    model, x, y = tiny
    x8 = (x * 255).round().to(torch.uint8)
    cfg = _cfg("clean,pgd20", batch_size=200, seed=3)
    first = evaluate(model, Split(x8, y), 10, cfg, "cpu")
    assert evaluate(model, Split(x8, y), 10, cfg, "cpu") == first
    assert evaluate_tensors(model, x8.float() / 255, y, 10, cfg, "cpu") == first
    other_seed = evaluate(model, Split(x8, y), 10, dataclasses.replace(cfg, seed=4), "cpu")
    assert other_seed["attacks"]["clean"] == first["attacks"]["clean"]


def test_n_restricts_to_first_images_and_restarts_take_worst_case(tiny):
    model, x, y = tiny
    one = dataclasses.replace(attack_specs(["pgd20"], eps=EPS, step=STEP)[0], n=100)
    full = evaluate_tensors(model, x, y, 10, EvalConfig((one,), batch_size=128), "cpu")["attacks"]["pgd20"]
    head = evaluate_tensors(model, x[:100], y[:100], 10, EvalConfig((one,), batch_size=128), "cpu")
    assert full["n"] == 100 and full == head["attacks"]["pgd20"]
    three = dataclasses.replace(one, restarts=3)  # same name → same seed: restart 1 equals the run above
    worst = evaluate_tensors(model, x, y, 10, EvalConfig((three,), batch_size=128), "cpu")["attacks"]["pgd20"]
    assert worst["acc"] <= full["acc"]
    assert all(w <= f for w, f in zip(worst["per_class"], full["per_class"]) if f is not None)


def _aa_on_first_32(tiny, eps):
    model, x, y = tiny
    result = evaluate_tensors(model, x, y, 10, _cfg("clean,pgd20,aa", eps=eps, aa_n=32), "cpu")
    aa, clean = result["attacks"]["aa"], result["attacks"]["clean"]
    assert aa["n"] == 32 and aa["spec"]["n"] == 32 and clean["n"] == len(x)
    assert len(aa["per_class"]) == 10
    head = evaluate_tensors(model, x[:32], y[:32], 10, _cfg("clean,pgd20", eps=eps), "cpu")["attacks"]
    assert aa["acc"] < head["clean"]["acc"]  # AA only ever turns correct points wrong, and finds some here
    json.dumps(result, allow_nan=False)
    return aa["acc"], head["pgd20"]["acc"]


def test_quick_autoattack_on_first_32_images(tiny):
    _aa_on_first_32(tiny, eps=2 * EPS)  # a large ε breaks every point in APGD-CE: seconds, not minutes


@pytest.mark.slow
def test_autoattack_at_the_dataset_budget_is_at_least_as_strong_as_pgd20(tiny):
    aa_acc, pgd_acc = _aa_on_first_32(tiny, eps=EPS)
    assert aa_acc <= pgd_acc


def test_evaluation_attacks_take_their_own_step_when_the_run_gives_one(tmp_path):
    """UIAT §4.2 evaluates SVHN with PGD-20 of step 2/255 while training at 1/255: eval_step_size decouples them."""
    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", train_limit=64, epochs=1, attack_steps=1,
                    step_size=0.02, eval_step_size=0.05, eval_n=16)
    run = RunStore(tmp_path).run_dir(cfg)
    result = train_run(cfg, run, evaluation=Evaluation(("clean", "pgd20"), n=16))
    assert json.loads(run.config_file.read_text())["resolved"]["step_size"] == 0.02  # training keeps its step
    per_epoch = [json.loads(line)["eval"]["attacks"]["pgd20"]["spec"]["step_size"]
                 for line in run.records_file.read_text().splitlines()]
    final = [c["attacks"]["pgd20"]["spec"]["step_size"] for c in result["checkpoints"].values()]
    assert per_epoch == [0.05] and set(final) == {0.05}
    with pytest.raises(ValueError, match="eval_step_size=0"):
        RunConfig(eval_step_size=0)
