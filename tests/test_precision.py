"""`--precision` (bench/precision.py): part of the run id only when not the default, applied by the training loop
(TF32 switches per run, bf16 autocast of the forward on any device), float32 look-aheads and weighting nets
under bf16, evaluation at the default precision whatever the training ran in, and bf16 agreeing with fp32."""
from __future__ import annotations

import json
import re
import typing

import pytest
import torch

import methods.bilaw.bilaw_meta as bilaw_meta
import methods.caat.caat as caat
from bench.checkpoint_io import load_checkpoint
from bench.cli import main
from bench.config import RunConfig
from bench.data.scenarios import ScenarioConfig
from bench.evaluate import AttackSpec, aa, attack_hits, clean, pgd20
from bench.models import build_model
from bench.precision import PRECISIONS
from bench.store import RunStore
from bench.train import train_run
from methods import required_heldout

TINY = dict(dataset="fmnist", model="tiny-cnn", train_limit=128, batch_size=32, attack_steps=2,
            eval_attacks=("clean",), eval_n=32, epochs=1)
# One method of each family; hyperparameters that make an add-on or a schedule act within one short epoch.
FAMILIES = {
    "pgd_at": (), "trades": (), "mail_at": (), "gairat": (),
    "trades+cfa": (("cfa.begin_epoch", "1"), ("cfa.start_epoch", "1"), ("cfa.threshold", "0"), ("loss_scale", "cfa")),
    "caat": (), "bilaw": (), "uiat": (("momentum_start", "0"),),
}


def _config(method: str, **changes) -> RunConfig:
    kind = required_heldout(method)
    scenario = ScenarioConfig(heldout=kind, heldout_per_class=10) if kind else ScenarioConfig()
    return RunConfig(method=method, hp=FAMILIES.get(method, ()), scenario=scenario, **{**TINY, **changes})


def _train(cfg: RunConfig, root) -> tuple[list[dict], dict[str, torch.Tensor], dict]:
    """(records, last weights, the attempt's environment line) of `cfg` trained in a fresh store under `root`."""
    run = RunStore(root).run_dir(cfg)
    train_run(cfg, run, evaluation=None)
    env = json.loads((run.path / "environment.jsonl").read_text().splitlines()[-1])
    return run.records(), load_checkpoint(run.last_ckpt)["model"], env


def test_default_precision_keeps_every_existing_run_id():
    """Ids computed before the field existed (commit b4bd6ee): runs in progress keep their folders."""
    known = {
        RunConfig(): "pgd_at_fmnist_tiny-cnn_s0-44136fa355",
        RunConfig(method="trades", dataset="cifar10-jpeg", model="preact-resnet18", epochs=100, lr=0.05):
            "trades_cifar10-jpeg_preact-resnet18_s0-856405d612",
        RunConfig(method="caat", scenario=ScenarioConfig(heldout="caat_meta"), fidelity="code"):
            "caat_fmnist_tiny-cnn_s0-22f279e832",
    }
    for cfg, run_id in known.items():
        assert cfg.precision == "default" and "precision" not in cfg.overrides()
        assert cfg.run_id() == run_id
        old_json = {k: v for k, v in cfg.to_dict().items() if k != "precision"}  # a config.json from before
        assert RunConfig.from_dict(old_json) == cfg
    ids = {RunConfig(precision=p).run_id() for p in PRECISIONS}
    assert len(ids) == len(PRECISIONS)  # every other precision is another run
    assert RunConfig(precision="bf16").overrides() == {"precision": "bf16"}


def test_the_registry_and_the_config_field_name_the_same_precisions():
    assert set(PRECISIONS) == set(typing.get_args(typing.get_type_hints(RunConfig)["precision"]))


def test_a_bad_precision_is_refused_naming_the_allowed_values(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--precision", "fp16x", "--runs-dir", str(tmp_path / "runs")])
    assert exited.value.code == 2
    allowed = r"\(choose from '?default'?, '?fp32'?, '?tf32'?, '?bf16'?\)"  # argparse quotes them before Python 3.12
    assert re.search(r"argument --precision: invalid choice: 'fp16x' " + allowed, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    allowed = "allowed: 'default', 'fp32', 'tf32', 'bf16'"
    with pytest.raises(ValueError, match=f"precision='fp16x' is not allowed; {allowed}"):
        RunConfig.from_dict({**RunConfig().to_dict(), "precision": "fp16x"})  # a hand-edited config.json


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_switches_are_set_for_the_block_and_restored(name):
    precision = PRECISIONS[name]
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = (not precision.conv_tf32,
                                                                              not precision.matmul_tf32)
    try:
        with precision.switches():
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (
                precision.conv_tf32, precision.matmul_tf32)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (
            not precision.conv_tf32, not precision.matmul_tf32)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    assert (PRECISIONS["default"].conv_tf32, PRECISIONS["default"].matmul_tf32) == (True, False)  # PyTorch's own


def test_under_bf16_the_network_computes_in_bf16_and_hands_out_float32():
    model = PRECISIONS["bf16"].prepare(build_model("tiny-cnn", 10, 1, 28))
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    x = torch.rand(4, 1, 28, 28)
    with PRECISIONS["bf16"].scope(torch.device("cpu")):
        logits, feats = model(x, return_features=True)
        assert model(x).dtype == torch.float32
        assert torch.log_softmax(logits, 1).dtype == torch.float32  # CPU autocast would keep bf16 logits' in bf16
    assert seen == [torch.bfloat16, torch.bfloat16] and logits.dtype == feats.dtype == torch.float32
    plain = PRECISIONS["fp32"].prepare(build_model("tiny-cnn", 10, 1, 28))
    assert not plain._forward_hooks  # no hook where nothing is cast


@pytest.mark.parametrize("method", list(FAMILIES))
def test_every_method_family_trains_in_bf16_on_cpu(method, tmp_path, monkeypatch):
    """A few bf16 steps with finite losses; the look-aheads' parameters (CAAT paper mode Eq. 9, BiLAW Eq. 5) and
    the weighting nets' outputs stay float32 while the step runs under autocast."""
    seen: dict[str, set] = {"lookahead": set(), "weights": set(), "autocast": set()}

    def spy_lookahead(real):
        def wrapped(*args, **kwargs):
            stepped = real(*args, **kwargs)
            seen["lookahead"] |= {v.dtype for v in stepped.values()}
            seen["autocast"].add(torch.is_autocast_enabled("cpu"))
            return stepped
        return wrapped

    def spy_weights(real):
        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            seen["weights"].add(out.dtype)
            return out
        return wrapped

    monkeypatch.setattr(caat, "sgd_lookahead", spy_lookahead(caat.sgd_lookahead))
    monkeypatch.setattr(caat.WeightingNet, "forward", spy_weights(caat.WeightingNet.forward))
    monkeypatch.setattr(bilaw_meta, "lookahead", spy_lookahead(bilaw_meta.lookahead))
    monkeypatch.setattr(bilaw_meta.WeightingNet, "raw_weights",
                        spy_weights(bilaw_meta.WeightingNet.raw_weights))
    cfg = _config(method, precision="bf16")
    (record,), weights, env = _train(cfg, tmp_path)
    assert torch.isfinite(torch.tensor(record["train_loss"])) and env["precision"] == "bf16 autocast"
    assert all(torch.isfinite(w).all() and w.dtype in (torch.float32, torch.int64) for w in weights.values())
    if method in ("caat", "bilaw"):
        assert seen == {"lookahead": {torch.float32}, "weights": {torch.float32}, "autocast": {True}}


def _evaluation_precision(model, x, y, specs: dict[str, list[AttackSpec]]) -> None:
    """Each precision's scope around attack_hits: no autocast reaches the model, the TF32 switches are PyTorch's
    defaults there, and the hits equal those of an evaluation outside any scope."""
    seen = set()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = first_conv.register_forward_hook(lambda m, i, out: seen.add(
        (out.dtype, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)))
    try:
        for name, attacks in specs.items():
            outside = [attack_hits(model, x, y, s, batch_size=16, seed=0, device="cpu") for s in attacks]
            with PRECISIONS[name].scope(torch.device("cpu")):
                inside = [attack_hits(model, x, y, s, batch_size=16, seed=0, device="cpu") for s in attacks]
            assert all((a == b).all() for a, b in zip(inside, outside)), name
    finally:
        handle.remove()
    assert seen == {(torch.float32, True, False)}


def test_evaluation_runs_at_the_default_precision_whatever_the_caller_set(trained_tiny_cnn):
    """Per-epoch monitoring and final attacks go through attack_hits (bench.evaluate, bench.eval_store)."""
    model, x, y = trained_tiny_cnn
    assert y[:16].eq(model(x[:16]).argmax(1)).any()  # images the attacks have to work on
    attacks = [clean(), pgd20(0.1, 0.02)]
    _evaluation_precision(model, x[:16], y[:16], {name: attacks for name in ("bf16", "fp32", "tf32")})


@pytest.mark.slow  # standard AutoAttack on 4 images: ~20 s on two busy cores
def test_autoattack_runs_at_the_default_precision_under_a_bf16_run(trained_tiny_cnn):
    model, x, y = trained_tiny_cnn
    _evaluation_precision(model, x[:4], y[:4], {"bf16": [aa(0.1, n=4)]})


def test_bf16_agrees_with_fp32_on_a_smoke_run(tmp_path):
    """8 PGD-AT steps on 512 F-MNIST images at fp32, default and bf16 (same seed).

    On CPU `default` is fp32: bitwise the same weights (TF32 exists only on CUDA). bf16 must differ (it ran) and
    agree within tolerances set at about 2× what bf16's 8-bit mantissa gave here (torch 2.14, x86): the epoch's
    mean training loss to 1e-3 relative (measured 5e-5: the loss is computed from float32 logits), the weights'
    deviation to 25 % of the update the fp32 run made (measured 11 %: sign-PGD turns rounding into whole ±step
    moves of some pixels, and 8 steps compound them), per-epoch clean and PGD-20 accuracy on 256 test images to
    0.05 (measured equal)."""
    smoke = dict(train_limit=512, batch_size=64, attack_steps=3, eval_attacks=("clean", "pgd20"), eval_n=256)
    _, initial, _ = _train(_config("pgd_at", lr=0.0, **smoke), tmp_path)  # lr 0: the seed's initial weights
    (fp32,), w32, _ = _train(_config("pgd_at", precision="fp32", **smoke), tmp_path)
    (default,), w_default, env = _train(_config("pgd_at", **smoke), tmp_path)
    (bf16,), w16, _ = _train(_config("pgd_at", precision="bf16", **smoke), tmp_path)
    assert env["precision"] == "fp32"
    assert all(torch.equal(w_default[k], w32[k]) for k in w32) and default["train_loss"] == fp32["train_loss"]

    def flat(weights):
        return torch.cat([v.flatten() for v in weights.values() if v.is_floating_point()])

    deviation = float((flat(w16) - flat(w32)).norm() / (flat(w32) - flat(initial)).norm())
    assert 0 < deviation < 0.25
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=1e-3)
    for attack in ("clean", "pgd20"):
        assert bf16["eval"]["attacks"][attack]["acc"] == pytest.approx(fp32["eval"]["attacks"][attack]["acc"], abs=0.05)
