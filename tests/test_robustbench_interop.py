"""RobustBench interop both ways: bench weights load strict=True into RobustBench 1.1.1's own modules and
compute the same logits; a RobustBench-format file is evaluated by the bench's attacks (`eval --weights`)."""
from pathlib import Path

import pytest
from cifar_subset import real_cifar10_jpeg, write_subset
import torch

from bench.checkpoint_io import load_checkpoint
from bench.cli import main
from bench.models import build_model
from bench.robustbench_interop import RB_ARCHS, check_exportable, load_robustbench, to_robustbench

EXPORTABLE = [(name, model) for name in RB_ARCHS for model in RB_ARCHS.get(name).bench_models]


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so eval-mode logits depend on every buffer's key."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_every_robustbench_counterpart_is_listed():
    assert {m for _, m in EXPORTABLE} == {"wrn-28-10", "wrn-34-10", "wrn-32-10", "preact-resnet18", "preact-resnet18-b"}


@pytest.mark.parametrize("arch_name,bench_model", EXPORTABLE)
def test_bench_weights_load_strictly_into_robustbench_and_give_the_same_logits(arch_name, bench_model):
    torch.manual_seed(0)
    bench = build_model(bench_model, 10).eval()
    _randomise_bn(bench, 1)
    arch = RB_ARCHS.get(arch_name)
    theirs = arch.model(10).eval()
    assert set(bench.state_dict()) != set(theirs.state_dict())  # the names differ: the export translates them
    theirs.load_state_dict(to_robustbench(arch, bench.state_dict()), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), bench(x), rtol=1e-5, atol=1e-5)


def test_a_zoo_style_trades_file_with_sub_block1_and_module_prefix_loads_strictly(tmp_path):
    torch.manual_seed(0)
    arch = RB_ARCHS.get("WideResNet-28-10")
    zoo = arch.build(10, sub_block1=True).eval()
    _randomise_bn(zoo, 2)
    path = tmp_path / "trades.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in zoo.state_dict().items()}}, path)
    loaded = load_robustbench(path, "WideResNet-28-10", 10)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), zoo(x))


def test_a_file_of_another_architecture_is_refused_with_the_strict_load_error(tmp_path):
    path = tmp_path / "preact.pt"
    torch.save(build_model("preact-resnet18", 10).state_dict(), path)  # bench keys, not RobustBench's
    with pytest.raises(ValueError, match="does not hold a RobustBench PreActResNet-18-V2 for 10 classes.*Missing"):
        load_robustbench(path, "PreActResNet-18-V2", 10)


@pytest.mark.parametrize("model,shape,normalize,message", [
    ("tiny-cnn", (1, 28, 28), False, "'tiny-cnn' has no RobustBench counterpart; exportable models: preact-resnet18"),
    ("preact-resnet18", (1, 28, 28), False, "takes 3×32×32 images .*are 1×28×28"),
    ("wrn-34-10", (3, 32, 32), True, "mean/std layer"),
])
def test_runs_robustbench_cannot_hold_are_refused(model, shape, normalize, message):
    with pytest.raises(ValueError, match=message):
        check_exportable(model, shape, normalize)


# ---- the round trip through the CLI, on a tiny subset of the real cifar10-jpeg -------------------------------------

@pytest.mark.slow  # about 40 s on one busy core: a PreAct-ResNet-18 trained, then attacked twice by PGD-10
def test_export_then_eval_weights_round_trip(tmp_path, monkeypatch, capsys):
    data = tmp_path / "cifar10-jpeg"
    data.mkdir()
    for split, n in (("train", 6), ("test", 2)):
        write_subset(real_cifar10_jpeg() / f"{split}.npz", data / f"{split}.npz", n)
    monkeypatch.setenv("BENCH_CIFAR10_JPEG", str(data))
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    runs = ["--runs-dir", str(tmp_path / "runs")]
    assert main([*runs, "train", "--method", "natural", "--dataset", "cifar10-jpeg", "--model", "preact-resnet18",
                 "--epochs", "1", "--batch-size", "30", "--eval-attacks", "clean",
                 "--rule", "best:attack=clean", "--final-attacks", "clean"]) == 0
    run_id = next((tmp_path / "runs").iterdir()).name
    out = tmp_path / "rb.pt"
    assert main([*runs, "export", run_id, "--format", "robustbench", "--checkpoint", "last", "--out", str(out)]) == 0
    assert f"--weights {out} --arch PreActResNet-18-V2 --dataset cifar10-jpeg" in capsys.readouterr().out

    from bench.attacks.autoattack import install_robustbench_alias

    install_robustbench_alias()  # `import robustbench` needs it
    from robustbench.model_zoo.architectures.resnet import PreActBlockV2, PreActResNet

    theirs = PreActResNet(PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True).eval()
    theirs.load_state_dict(torch.load(out, weights_only=True)["state_dict"], strict=True)
    ours = build_model("preact-resnet18", 10).eval()
    ours.load_state_dict(load_checkpoint(tmp_path / "runs" / run_id / "checkpoints" / "model-e0000.pt")["model"])
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)

    attacks = ["--attacks", "clean,pgd10"]
    assert main([*runs, "eval", run_id, "--checkpoint", "last", *attacks]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.strip().startswith("last (epoch 1)"))
    stored = line.split(")", 1)[1].strip()
    assert main(["eval", "--weights", str(out), "--arch", "PreActResNet-18-V2", "--dataset", "cifar10-jpeg",
                 *attacks]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out} [PreActResNet-18-V2]  ") and "n=20" in printed
    assert printed.split("]  ", 1)[1].strip() == stored  # the same numbers as the bench's own model under the same attacks


def test_eval_weights_needs_an_architecture(tmp_path, capsys):
    assert main(["eval", "--weights", str(tmp_path / "x.pt")]) == 2
    assert "--weights needs --arch" in capsys.readouterr().err
    assert main(["eval", "--weights", str(tmp_path / "x.pt"), "--arch", "WideResNet-34-1"]) == 2
    assert "'WideResNet-34-1'" in capsys.readouterr().err
