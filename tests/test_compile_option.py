"""`--compile` (bench.compile_option): a compiled model trains a standard method to the same numbers as eager."""
from __future__ import annotations

import pytest
import torch

from bench.compile_option import check_compilable, compile_for_training
from bench.data import Split
from bench.models import build_model
from methods import Batch, MethodContext, build_method


def _two_steps(model, name: str) -> list[float]:
    g = torch.Generator().manual_seed(0)
    held = Split(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(8) % 10)
    ctx = MethodContext(num_classes=10, eps=0.1, step_size=0.02, attack_steps=3, epochs=1, steps_per_epoch=2,
                        class_counts=(4,) * 10, heldout={"val_meta": held}, device=torch.device("cpu"),
                        fidelity="paper", new_model=lambda: build_model("tiny-cnn", 10, 1, 28), batch_size=16)
    method = build_method(name, {}, ctx)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(16, 1, 28, 28, generator=g), torch.arange(16) % 10
    losses = []
    for step in range(2):
        torch.manual_seed(step)
        out = method.loss(model, Batch(x, y, torch.arange(16), 0, step), optimizer)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


@pytest.mark.slow  # compiling takes ~30 s on two busy cores
def test_compiled_model_trains_like_eager_and_keeps_its_parameter_names():
    torch.manual_seed(0)
    eager = build_model("tiny-cnn", 10, 1, 28)
    compiled = build_model("tiny-cnn", 10, 1, 28)
    compiled.load_state_dict(eager.state_dict())
    names = [n for n, _ in compiled.named_parameters()]
    assert compile_for_training(compiled) is compiled
    assert [n for n, _ in compiled.named_parameters()] == names  # checkpoints and look-aheads address by name
    assert _two_steps(compiled, "trades") == pytest.approx(_two_steps(eager, "trades"), rel=1e-5)
    for p, q in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)  # fused kernels round differently


def _method(name: str):
    g = torch.Generator().manual_seed(0)
    held = Split(torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(8) % 10)
    ctx = MethodContext(num_classes=10, eps=0.1, step_size=0.02, attack_steps=3, epochs=2, steps_per_epoch=2,
                        class_counts=(4,) * 10, heldout={"meta": held, "val_meta": held}, device=torch.device("cpu"),
                        fidelity="paper", new_model=lambda: build_model("tiny-cnn", 10, 1, 28), batch_size=16,
                        image_shape=(1, 28, 28))
    return build_method(name, {}, ctx)


def test_methods_with_a_second_order_backward_are_refused():
    for name in ("bilaw", "bilaw_np", "caat", "gradalign"):
        with pytest.raises(ValueError, match=f"--compile: {name} takes a second-order backward"):
            check_compilable(name, _method(name))
    for name in ("pgd_at", "trades", "uiat"):
        check_compilable(name, _method(name))


@pytest.mark.slow  # compiling takes ~30 s on two busy cores
def test_torch_compile_still_refuses_double_backward():
    """The reason for the refusal above: if a torch release lifts it, this fails and the refusal can go."""
    model = compile_for_training(build_model("tiny-cnn", 10, 1, 28))
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    with pytest.raises(RuntimeError, match="double backward|create_graph=False"):  # donated buffers say it first
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()),
                                    create_graph=True)
        sum(g.square().sum() for g in grads).backward()


def test_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="'fast' is not one of default, reduce-overhead, max-autotune"):
        compile_for_training(build_model("tiny-cnn", 10, 1, 28), "fast")


def _train_pgd_at(root, compile: bool):
    import json

    from bench.checkpoint_io import load_checkpoint
    from bench.config import RunConfig
    from bench.store import RunStore
    from bench.train import train_run
    from bench.training.assemble import Runtime

    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", train_limit=256, batch_size=64,
                    attack_steps=2, eval_attacks=("clean",), eval_n=64, epochs=1)
    run = RunStore(root).run_dir(cfg)
    train_run(cfg, run, Runtime(compile=compile), evaluation=None)
    env = json.loads((run.path / "environment.jsonl").read_text())
    return run.path.name, run.records()[0], load_checkpoint(run.last_ckpt)["model"], env


@pytest.mark.slow  # compiling takes ~15 s on two busy cores
def test_a_compiled_training_run_ends_close_to_the_eager_one_under_the_same_id(tmp_path):
    """`bench train --compile`: a runtime choice (not in the run id), recorded per attempt in environment.jsonl."""
    eager_id, eager, w_eager, env_eager = _train_pgd_at(tmp_path / "eager", compile=False)
    compiled_id, compiled, w_compiled, env_compiled = _train_pgd_at(tmp_path / "compiled", compile=True)
    assert compiled_id == eager_id and (env_eager["compiled"], env_compiled["compiled"]) == (False, True)
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-5)
    for k in w_eager:
        torch.testing.assert_close(w_compiled[k], w_eager[k], rtol=1e-3, atol=1e-5)  # fused kernels round differently


def test_compile_of_a_second_order_method_is_refused_before_anything_is_written(tmp_path, capsys):
    from bench.cli import main

    runs = tmp_path / "runs"
    assert main(["train", "--method", "caat", "--compile", "--epochs", "1", "--train-limit", "64",
                 "--runs-dir", str(runs)]) == 2
    assert "--compile: caat takes a second-order backward each step" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


def test_bench_run_refuses_compile_for_a_grid_with_a_second_order_method_before_training(tmp_path, capsys):
    from bench.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "table1_bilaw", "--profile", "smoke", "--compile", "--runs-dir", str(runs)]) == 2
    assert "--compile: bilaw takes a second-order backward each step" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("executor", ["local", "debug"])
def test_bench_run_hands_compile_to_its_executor(executor):
    """`bench run --compile` reaches the runtime each run trains with, here or in a submitit job."""
    from bench.cli import build_parser
    from bench.cli_grid import _executor

    for flag in ([], ["--compile"]):
        args = build_parser().parse_args(["run", "table1_bilaw", "--executor", executor, *flag])
        built = _executor(args)
        compiled = built.runtime.compile if executor == "local" else built.compile
        assert compiled is bool(flag)


@pytest.mark.slow  # compiling takes ~15 s on two busy cores
def test_a_submitit_job_trains_compiled_and_records_it(tmp_path):
    import json

    from bench.config import RunConfig
    from bench.executors.job import TrainJob
    from bench.store import RunStore

    cfg = RunConfig(method="pgd_at", dataset="fmnist", model="tiny-cnn", train_limit=128, batch_size=64,
                    attack_steps=2, eval_attacks=("clean",), eval_n=32, epochs=1)
    run = RunStore(tmp_path).run_dir(cfg)
    TrainJob()(cfg.to_dict(), str(run.path), "cpu", None, None, None, True)
    assert json.loads((run.path / "environment.jsonl").read_text().splitlines()[-1])["compiled"] is True
