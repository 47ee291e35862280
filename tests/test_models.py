"""Model zoo: shapes, features, in-model normalization, parameter counts, registry behaviour."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.models import MODELS, Normalize, build_model, describe
from bench.registry import UnknownNameError

NAMES = ["preact-resnet18", "preact-resnet18-b", "resnet18", "wrn-28-10", "wrn-34-10", "wrn-32-10",
         "small-cnn", "tiny-cnn", "fc1"]
SMALL = ["small-cnn", "tiny-cnn", "fc1"]
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **kwargs) -> nn.Module:
    """Built on the meta device: parameter shapes without the cost of allocating/initialising WRNs."""
    with torch.device("meta"):
        return build_model(name, **kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_has_exactly_the_contract_names_with_descriptions():
    assert sorted(MODELS.names()) == sorted(NAMES)
    for name in NAMES:
        assert describe(name).strip() and "\n" not in describe(name)


def test_unknown_name_is_refused_with_hint():
    with pytest.raises(UnknownNameError, match="preact-resnet18"):
        build_model("preact-resnet-18", 10)
    with pytest.raises(UnknownNameError):
        describe("vgg16")


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("wrn")])
def test_cifar_shapes_and_features(name):
    model = build_model(name, 10, mean=CIFAR_MEAN, std=CIFAR_STD).eval()
    x = torch.rand(2, 3, 32, 32)
    logits, feats = model(x, return_features=True)
    assert logits.shape == (2, 10)
    assert feats.shape == (2, model.head.in_features)
    torch.testing.assert_close(model.head(feats), logits)
    torch.testing.assert_close(model(x), logits)


@pytest.mark.parametrize("name", ["wrn-28-10", "wrn-34-10", "wrn-32-10"])
def test_wrn_forward_batch_one(name):
    model = build_model(name, 10).eval()
    with torch.no_grad():
        logits, feats = model(torch.rand(1, 3, 32, 32), return_features=True)
    assert logits.shape == (1, 10) and feats.shape == (1, 640)
    torch.testing.assert_close(model.head(feats), logits)


@pytest.mark.parametrize("name", SMALL + ["preact-resnet18", "resnet18"])
def test_fmnist_shaped_inputs(name):
    model = build_model(name, 10, in_channels=1, image_size=28, mean=(0.2860,), std=(0.3530,)).eval()
    logits, feats = model(torch.rand(2, 1, 28, 28), return_features=True)
    assert logits.shape == (2, 10)
    torch.testing.assert_close(model.head(feats), logits)


def test_tiny_imagenet_shape_uses_global_pooling():
    model = build_model("preact-resnet18", 200, image_size=64).eval()
    logits, feats = model(torch.rand(2, 3, 64, 64), return_features=True)
    assert logits.shape == (2, 200) and feats.shape == (2, 512)


@pytest.mark.parametrize("name", ["tiny-cnn", "small-cnn", "preact-resnet18"])
def test_normalization_is_first_and_applies_given_mean_std(name):
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    normed = build_model(name, 10, mean=mean, std=std).eval()
    plain = build_model(name, 10).eval()
    plain.load_state_dict(normed.state_dict())  # strict: stats are not part of the checkpoint
    first = next(iter(normed.children()))
    assert isinstance(first, Normalize)
    torch.testing.assert_close(first.mean.flatten(), torch.tensor(mean))
    torch.testing.assert_close(first.std.flatten(), torch.tensor(std))
    x = torch.rand(2, 3, 32, 32)
    expected = plain((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(normed(x), expected)
    assert not torch.allclose(plain(x), expected)  # normalization actually changed something


def test_normalize_identity_and_bad_statistics():
    x = torch.rand(2, 3, 4, 4)
    assert torch.equal(Normalize(3)(x), x)
    with pytest.raises(ValueError, match="both"):
        Normalize(3, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="per input channel"):
        Normalize(1, mean=CIFAR_MEAN, std=CIFAR_STD)
    with pytest.raises(ValueError, match="positive"):
        Normalize(3, mean=CIFAR_MEAN, std=(0.2, 0.0, 0.2))


@pytest.mark.parametrize("name, low, high", [
    ("preact-resnet18", 11.16e6, 11.18e6), ("preact-resnet18-b", 11.16e6, 11.18e6),
    ("resnet18", 11.16e6, 11.18e6), ("wrn-28-10", 36.4e6, 36.55e6),
    ("wrn-34-10", 46.1e6, 46.25e6), ("wrn-32-10", 46.1e6, 46.25e6),
])
def test_parameter_counts_of_standard_models(name, low, high):
    assert low <= n_params(meta_model(name, num_classes=10)) <= high


def test_exact_parameter_counts_of_mnist_nets():
    # tiny-CNN on 1×28×28: conv 1→16 (4×4) + bias, conv 16→32 (4×4) + bias, 28 → 14 → 7,
    # FC 32·7·7 → 100 + bias, FC 100 → 10 + bias.
    tiny = 16 * 1 * 16 + 16 + 32 * 16 * 16 + 32 + 32 * 7 * 7 * 100 + 100 + 100 * 10 + 10
    assert tiny == 166_406
    assert n_params(build_model("tiny-cnn", 10, in_channels=1, image_size=28)) == tiny
    fc1 = 784 * 1024 + 1024 + 1024 * 10 + 10
    assert n_params(build_model("fc1", 10, in_channels=1, image_size=28)) == fc1 == 814_090


def test_small_cnn_flatten_size_follows_image_size():
    # three max-pools: 32 → 4 and 28 → 3, so FC 196·4·4 resp. 196·3·3 into 256 units
    diff = n_params(build_model("small-cnn", 10)) - n_params(build_model("small-cnn", 10, image_size=28))
    assert diff == 196 * (16 - 9) * 256


def test_variant_b_lacks_the_final_batchnorm():
    a, b = meta_model("preact-resnet18", num_classes=10), meta_model("preact-resnet18-b", num_classes=10)
    bns = lambda m: sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert bns(a) == bns(b) + 1
    assert n_params(a) - n_params(b) == 2 * 512
    assert isinstance(a.bn, nn.BatchNorm2d) and b.bn is None


def test_wrn_32_10_and_34_10_are_the_same_net_and_options_pass_through():
    p32 = {k: v.shape for k, v in meta_model("wrn-32-10", num_classes=10).state_dict().items()}
    p34 = {k: v.shape for k, v in meta_model("wrn-34-10", num_classes=10).state_dict().items()}
    assert p32 == p34
    wrn = meta_model("wrn-28-10", num_classes=10, dropout=0.3)
    assert wrn.dropout == 0.3 and all(b.dropout == 0.3 for b in wrn.block2)
    assert len(wrn.block1) == 4 and len(meta_model("wrn-34-10", num_classes=10).block1) == 5
    with pytest.raises(ValueError, match="multiple of 6"):
        meta_model("wrn-28-10", num_classes=10, depth=30)


def test_wrn_madry_initialisation():
    model = build_model("wrn-32-10", 10, width=1)  # same init code, cheap width
    conv = model.block3[0].conv1  # 3×3, 64 output channels
    assert abs(conv.weight.std().item() - (2 / (9 * 64)) ** 0.5) < 0.01
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(model.head.bias, torch.zeros(10))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        build_model("fc1", 1)
    with pytest.raises(ValueError, match="in_channels"):
        build_model("fc1", 10, in_channels=0)
    with pytest.raises(ValueError, match="image_size >= 8"):
        build_model("small-cnn", 10, image_size=4)


def test_input_gradient_flows_for_attacks():
    model = build_model("preact-resnet18", 10, mean=CIFAR_MEAN, std=CIFAR_STD).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    nn.functional.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["preact-resnet18", "small-cnn", "tiny-cnn"])
def test_channels_last_and_bf16_autocast(name):
    model = build_model(name, 10, mean=CIFAR_MEAN, std=CIFAR_STD).eval()
    x = torch.rand(2, 3, 32, 32)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model_cl(x_cl), ref, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model_cl(x_cl)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05
