"""The ℓ2 threat model (BiLAW Table 1's ℓ2 columns): ℓ2 PGD's ball, box and loss, the norm threaded from
RunConfig through the methods' training attacks to the evaluation specs in result.json, AutoAttack-L2, and
the clear refusal of methods that are L∞-only."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bench.evaluate
import methods.core.adversaries
import methods.bilaw.bilaw
import methods.reweighting.gairat
import methods.reweighting.wmmr
from bench.attacks import autoattack, pgd
from bench.cli import build_parser, config_from_args, main
from bench.config import RunConfig
from bench.data import DATASETS, Split
from bench.evaluate import AttackSpec, EvalConfig, attack_specs, evaluate_tensors
from bench.store import RunStore
from bench.eval_store import Evaluation
from bench.train import train_run
from bench.training.assemble import attack_budget
from methods import METHODS, MethodContext, build_method
from methods.core.base import Batch

EPS = 0.3  # BiLAW Table 1's ℓ2 budget
L2_METHODS = ("natural", "pgd_at", "gairat", "wmmr", "mail_at", "bilaw")
TOL = 1e-5


def l2_dist(u, x):
    return (u - x).flatten(1).norm(dim=1)


def per_sample_ce(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.fixture(scope="module")
def batch(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    return model, x[:128], y[:128]


@pytest.mark.parametrize("init", ["uniform", "normal", "none"])
def test_l2_pgd_stays_in_the_per_sample_ball_and_the_box(batch, init):
    model, x, y = batch
    eps = torch.linspace(0, 2 * EPS, len(y))
    eps[::9] = 0.0
    u = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10, norm="l2", init=init)
    assert (l2_dist(u, x) <= eps + TOL).all() and u.min() >= 0 and u.max() <= 1
    assert torch.equal(u[eps == 0], x[eps == 0])
    active = eps > 0
    assert (l2_dist(u, x)[active] > 0.9 * eps[active]).float().mean() > 0.9  # the attack uses its budget


def test_l2_uniform_start_fills_the_ball(batch):
    """Zero steps return the start: uniform in the ℓ2 ball (radius ε·U^(1/d), so nearly all mass near the sphere)."""
    model, x, y = batch
    u = pgd(model, x, y, eps=EPS, step_size=0.0, steps=0, norm="l2", init="uniform",
            generator=torch.Generator().manual_seed(0))
    d = l2_dist(u, x)
    assert (d <= EPS + TOL).all() and u.min() >= 0 and u.max() <= 1
    assert d.median() > 0.5 * EPS  # the box clip shortens some starts, yet most stay far from x


def test_l2_pgd_raises_the_loss_over_clean_and_a_scalar_eps_matches_a_constant_tensor(batch):
    model, x, y = batch
    clean = per_sample_ce(model, x, y)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    adv = pgd(model, x, y, eps=EPS, step_size=EPS / 4, steps=10, norm="l2", generator=gen())
    robust = per_sample_ce(model, adv, y)
    assert robust.mean() > 1.2 * clean.mean() and (robust >= clean - 1e-4).float().mean() > 0.95
    same = pgd(model, x, y, eps=torch.full((len(y),), EPS), step_size=torch.full((len(y),), EPS / 4), steps=10,
               norm="l2", generator=gen())
    assert torch.allclose(adv, same)


def test_eval_specs_carry_the_norm_and_l2_cw_keeps_the_runs_step():
    specs = {s.name: s for s in attack_specs("clean,pgd20,pgd10,cw,aa", eps=EPS, step=0.075, dataset="cifar10",
                                             norm="l2")}
    assert {s.norm for s in specs.values()} == {"l2"}
    assert specs["cw"].step_size == 0.075  # CIFAR's CW step 0.01 is an L∞ one
    assert attack_specs("cw", eps=8 / 255, step=2 / 255, dataset="cifar10")[0].norm == "linf"
    with pytest.raises(ValueError, match="norm 'l1' unknown"):
        AttackSpec("pgd20", "pgd", eps=EPS, steps=20, step_size=0.075, norm="l1")


def test_autoattack_l2_evaluates_a_few_images(trained_tiny_cnn, monkeypatch):
    """Standard AutoAttack with norm "L2" through the evaluation (aa_n = 4, ≈ 12 s on a CPU core): its
    adversaries stay in the ℓ2 ball and the box, and the spec records the norm."""
    model, x, y = trained_tiny_cnn
    calls = []

    def checked_autoattack(model, xb, yb, **kwargs):
        adv = autoattack(model, xb, yb, **kwargs)
        calls.append(kwargs["norm"])
        assert (l2_dist(adv, xb) <= kwargs["eps"] + TOL).all() and adv.min() >= 0 and adv.max() <= 1
        return adv

    monkeypatch.setattr(bench.evaluate, "autoattack", checked_autoattack)
    cfg = EvalConfig(attack_specs("clean,aa", eps=EPS, step=EPS / 4, norm="l2"), aa_n=4)
    result = evaluate_tensors(model, x[:4], y[:4], 10, cfg, "cpu")
    aa, clean = result["attacks"]["aa"], result["attacks"]["clean"]
    assert calls == ["L2"] and aa["n"] == 4 and aa["spec"]["norm"] == "l2"
    assert aa["acc"] <= clean["acc"]


def test_run_config_validates_the_norm_and_keeps_linf_run_ids():
    assert RunConfig().norm == "linf" and "norm" not in RunConfig().overrides()
    assert RunConfig(norm="l2", eps=EPS).overrides()["norm"] == "l2"
    with pytest.raises(ValueError, match="norm='l2' needs an explicit eps"):
        RunConfig(norm="l2")
    with pytest.raises(ValueError, match="norm='linf2' is not allowed; allowed: 'linf', 'l2'"):
        RunConfig(norm="linf2", eps=EPS)
    fmnist = DATASETS.get("fmnist")
    assert attack_budget(RunConfig(norm="l2", eps=EPS), fmnist) == (EPS, EPS / 4)
    assert attack_budget(RunConfig(norm="l2", eps=EPS, step_size=0.1), fmnist) == (EPS, 0.1)
    assert attack_budget(RunConfig(), fmnist) == (fmnist.default_eps, fmnist.default_step)


def test_cli_norm_flag(capsys, tmp_path):
    args = build_parser().parse_args(["train", "--norm", "l2", "--eps", "0.3"])
    assert (config_from_args(args).norm, config_from_args(args).eps) == ("l2", EPS)
    assert main(["train", "--norm", "l2", "--runs-dir", str(tmp_path)]) == 2
    assert "needs an explicit eps" in capsys.readouterr().err


def _ctx(norm="l2"):
    g = torch.Generator().manual_seed(1)
    val = Split(torch.randint(0, 256, (16, 1, 4, 4), dtype=torch.uint8, generator=g),
                torch.randint(0, 3, (16,), generator=g))
    return MethodContext(num_classes=3, eps=EPS, step_size=EPS / 4, attack_steps=2, epochs=2, steps_per_epoch=1,
                         class_counts=(4, 4, 4), heldout={"val_meta": val}, device=torch.device("cpu"),
                         fidelity="paper", new_model=_model, batch_size=8, seed=0, norm=norm)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3))


@pytest.mark.parametrize("name", L2_METHODS)
def test_the_six_table1_methods_attack_in_the_l2_ball(name, monkeypatch):
    """Every PGD call a supporting method makes during a step is an ℓ2 one."""
    norms = []

    def recording_pgd(*args, **kwargs):
        norms.append(kwargs.get("norm", "linf"))
        return pgd(*args, **kwargs)

    for module in (methods.core.adversaries, methods.reweighting.gairat, methods.reweighting.wmmr, methods.bilaw.bilaw):
        monkeypatch.setattr(module, "pgd", recording_pgd)
    model = _model()
    method = build_method(name, {}, _ctx())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    batch = Batch(torch.rand(8, 1, 4, 4, generator=g), torch.randint(0, 3, (8,), generator=g), torch.arange(8), 1, 0)
    assert torch.isfinite(method.loss(model, batch, optimizer).loss)
    expected = set() if name == "natural" else {"l2"}  # natural has no adversary
    assert set(norms) == expected and (name == "natural") == (not norms)


def test_every_other_method_and_every_add_on_refuses_l2_by_name():
    supported = sorted(n for n in METHODS if "l2" in METHODS.get(n).norms)
    assert supported == sorted(L2_METHODS)
    with pytest.raises(ValueError, match=r"method 'trades' does not support norm='l2'; the methods that do: "
                                         + ", ".join(supported)):
        build_method("trades", {}, _ctx())
    with pytest.raises(ValueError, match=r"add-on 'ema' does not support norm='l2'; the add-ons that do: none"):
        build_method("pgd_at+ema", {}, _ctx())
    assert build_method("trades", {}, _ctx("linf"))  # L∞ is unaffected


def test_unsupported_method_refuses_l2_before_any_run_folder_exists(tmp_path):
    cfg = RunConfig(method="mart", norm="l2", eps=EPS, train_limit=128, epochs=1)
    run = RunStore(tmp_path).run_dir(cfg)
    with pytest.raises(ValueError, match="method 'mart' does not support norm='l2'"):
        train_run(cfg, run)
    assert not run.path.exists()


def test_pgd_at_trains_one_l2_epoch_and_records_the_norm(tmp_path):
    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", norm="l2", eps=EPS, train_limit=128,
                    epochs=1, eval_attacks=("clean", "pgd20"), eval_n=32)
    run = RunStore(tmp_path).run_dir(cfg)
    result = train_run(cfg, run, evaluation=Evaluation(("clean", "pgd20"), n=64))
    assert json.loads(run.config_file.read_text())["resolved"]["step_size"] == EPS / 4
    for evaluation in result["checkpoints"].values():
        specs = {name: a["spec"] for name, a in evaluation["attacks"].items()}
        assert {s["norm"] for s in specs.values()} == {"l2"} and specs["pgd20"]["eps"] == EPS
        assert evaluation["attacks"]["pgd20"]["acc"] <= evaluation["attacks"]["clean"]["acc"]
    assert json.loads(run.config_file.read_text())["config"]["norm"] == "l2"
    assert run.config().norm == "l2"
    record = run.records()[0]
    assert record["eval"]["attacks"]["pgd20"]["spec"]["norm"] == "l2"
