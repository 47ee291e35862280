"""Each method's declared step bound (methods.core.step_bound) against the passes one real step makes on a tiny CNN:
the images through the model's forward (hooks), and the conv/linear arithmetic (torch's FLOP formulas, counted
under a dispatch mode so that autograd.grad and double backward are seen too)."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from bench.data import Split
from bench.models import build_model
from methods import Batch, MethodContext, build_method
from methods.core.step_bound import Passes, attack, hypergradient, update

B, C, K = 16, 10, 3


class FlopCount(TorchDispatchMode):
    """Total FLOPs of every op torch has a formula for (conv, mm, their backward), forward and backward alike."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


def _model():
    return build_model("tiny-cnn", C, in_channels=1, image_size=28)


@pytest.fixture(scope="module")
def helper_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("helper")
    torch.save({"model": _model().state_dict()}, folder / "helper.pt")
    return folder / "helper.pt"  # a plain weights file (a run folder must be a finished bench run)


def _ctx(fidelity: str) -> MethodContext:
    g = torch.Generator().manual_seed(0)
    held = Split(torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(64) % C)
    return MethodContext(num_classes=C, eps=0.1, step_size=0.02, attack_steps=K, epochs=10, steps_per_epoch=10,
                         class_counts=(10,) * C, heldout={"meta": held, "val": held, "val_meta": held},
                         device=torch.device("cpu"), fidelity=fidelity, new_model=_model, image_shape=(1, 28, 28),
                         batch_size=B)


def _count(name: str, hp: dict, fidelity: str = "paper", train: bool = True) -> tuple[float, float, Passes]:
    """(forward images / B, FLOPs / forward FLOPs of one batch, declared bound) of one step in the last epoch."""
    torch.manual_seed(0)
    ctx = _ctx(fidelity)
    method = build_method(name, hp, ctx)
    model = _model().train(train)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(B, 1, 28, 28), torch.arange(B) % C
    with FlopCount() as one:
        model(x)
    images = []
    hook = model.register_forward_hook(lambda module, args, out: images.append(len(args[0])))
    with FlopCount() as flops:
        out = method.loss(model, Batch(x, y, torch.arange(B), epoch=ctx.epochs - 1, step=0), optimizer)
        out.loss.backward()
    hook.remove()
    return sum(images) / B, flops.total / one.total, method.step_bound(ctx.epochs - 1)


CASES = [("natural", {}), ("pgd_at", {}), ("trades", {}), ("mart", {}), ("gairat", {}), ("fat", {}),
         ("mail_at", {}), ("mail_trades", {}), ("wmmr", {}), ("baseline_reweight", {}), ("frl_rwrm", {}),
         ("rs_fgsm", {}), ("nfgsm", {}), ("gradalign", {}), ("uiat", {}), ("iat", {}), ("uiat_oneoff", {}),
         ("caat", {}), ("caat", {"bound": "grad"}), ("caat", {"direction": "adversarial"}),
         ("bilaw", {}), ("bilaw", {"margin_on": "clean"}), ("bilaw_trades", {}), ("bilaw_np", {}),
         ("bilaw", {"val_attack_steps": "1"}), ("pgd_at+ema", {}), ("trades+cfa", {"loss_scale": "cfa"}),
         ("nfgsm+uiat", {})]


@pytest.mark.parametrize("name,hp", CASES, ids=[f"{n}-{'-'.join(hp.values())}" for n, hp in CASES])
def test_declared_bound_matches_the_counted_passes(name, hp):
    images, flops, bound = _count(name, hp)
    assert images == pytest.approx(bound.fwd)
    # the cost weights are layer averages (a param backward skips the first layer's input gradient): within 8 %
    assert 0.92 * bound.units <= flops <= 1.08 * bound.units, (flops, bound.describe())


def test_helper_forward_counts_in_hat(helper_dir):
    images, flops, bound = _count("hat", {"helper": str(helper_dir)})
    assert images == bound.fwd - 1  # the helper's forward is another model of the same architecture
    assert 0.92 * bound.units <= flops <= 1.08 * bound.units


def test_caat_code_mode_meta_step_and_its_amortisation():
    # a code-mode epoch runs in eval mode after its first batch; meta_every=1 puts the pseudo step in this one
    images, flops, bound = _count("caat", {"meta_every": "1"}, "code", train=False)
    assert images == pytest.approx(bound.fwd)
    assert 0.92 * bound.units <= flops <= 1.08 * bound.units
    amortised = build_method("caat", {}, _ctx("code")).step_bound(0)
    assert amortised.fwd == pytest.approx(3 + 2 * K + (2 * K + 4 + 3 + 2 * K) / 50)  # a meta step every 50 batches


def test_bounds_of_the_meta_methods_in_passes():
    ctx = _ctx("paper")
    caat = build_method("caat", {}, ctx).step_bound(0)
    assert caat == update(3) + Passes(fwd=1) + attack(K, 2) + Passes(fwd=1) + attack(K, 2) + hypergradient(3, 3)
    bilaw = build_method("bilaw", {}, ctx).step_bound(0)
    assert bilaw == attack(K) + attack(K) + update(1) + Passes(fwd=1, bwd=2, second=1)
