"""Data: loaders, registry, scenario generators (spec §1) and on-device batches/augmentation."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import DATASETS, MissingDatasetError, Split, load_dataset
from bench.data.batches import AugmentSpec, BatchStream, augment
from bench.data.loaders import load_cifar10_jpeg
from bench.data.noise import resample_labels, transition_matrix
from bench.data.scenarios import ScenarioConfig, build_scenario
from bench.registry import UnknownNameError

CIFAR10_JPEG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"


# ---- loaders / registry ---------------------------------------------------------------------------------------

def test_fmnist_loads():
    train, test = load_dataset("fmnist")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.uint8 and train.y.dtype == torch.int64
    assert torch.bincount(train.y).tolist() == [6000] * 10
    f = test.float_images()
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() == 1
    info = DATASETS.get("fmnist")
    assert abs(train.float_images().mean().item() - info.mean[0]) < 1e-3  # registry stats match the data


@pytest.mark.skipif(not (CIFAR10_JPEG / "train.npz").is_file(),
                    reason=f"cifar10-jpeg npz files absent at {CIFAR10_JPEG}")
def test_cifar10_jpeg_loads_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("BENCH_CIFAR10_JPEG", str(CIFAR10_JPEG))
    train, test = load_dataset("cifar10-jpeg")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.x.shape == (50000, 3, 32, 32) and train.x.dtype == torch.uint8
    assert torch.bincount(train.y).tolist() == [5000] * 10 and torch.bincount(test.y).tolist() == [1000] * 10
    assert sorted(p.name.split("-")[2] for p in tmp_path.glob("*.npz")) == ["test", "train"]
    again, _ = load_cifar10_jpeg()  # from the cache now
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                          ("svhn", "train_32x32.mat"), ("mnist", "MNIST"),
                                          ("tinyimagenet", "tiny-imagenet-200")])
def test_missing_dataset_names_dataset_and_path(tmp_path, name, folder):
    with pytest.raises(MissingDatasetError) as e:
        load_dataset(name, data_root=str(tmp_path))
    msg = str(e.value)
    assert f"'{name}'" in msg and str(tmp_path) in msg and folder in msg and "BENCH_DATA_ROOT" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_cifar10_jpeg_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CIFAR10_JPEG", str(tmp_path / "nope"))
    with pytest.raises(MissingDatasetError, match="cifar10-jpeg.*nope.*train.npz"):
        load_dataset("cifar10-jpeg")


def test_unknown_dataset_refused_with_hint():
    with pytest.raises(UnknownNameError, match="Did you mean 'cifar10'"):
        load_dataset("cifar01")


def test_registry_entries():
    assert set(DATASETS.names()) == {"fmnist", "cifar10-jpeg", "cifar10", "cifar100", "svhn", "mnist", "tinyimagenet"}
    c, f, s = DATASETS.get("cifar10-jpeg"), DATASETS.get("fmnist"), DATASETS.get("svhn")
    assert c.default_eps == pytest.approx(8 / 255) and c.default_step == pytest.approx(2 / 255)
    assert (c.crop_padding, c.flip, s.flip) == (4, True, False)
    assert f.default_eps == 0.1 and f.default_step == pytest.approx(0.025) and (f.crop_padding, f.flip) == (0, False)
    assert len(DATASETS.get("cifar100").class_names) == 100 and DATASETS.get("tinyimagenet").shape == (3, 64, 64)


# ---- scenarios ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic() -> Split:
    """5000/class × 10 classes, classes interleaved so that 'dataset order' differs from sorted order."""
    y = np.random.RandomState(0).permutation(np.repeat(np.arange(10), 5000))
    x = torch.arange(len(y) * 4, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(-1, 1, 2, 2)
    return Split(x, torch.from_numpy(y))


def _class_counts(split: Split) -> list[int]:
    return torch.bincount(split.y, minlength=10).tolist()


CAAT_IF10 = [4700, 3639, 2817, 2181, 1689, 1307, 1012, 784, 607, 470]
CAAT_IF100 = [4700, 2817, 1689, 1012, 607, 363, 218, 130, 78, 47]
CUI_IF10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
CUI_IF100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize("heldout, imbalance, expected", [
    ("caat_meta", 10, CAAT_IF10), ("caat_meta", 100, CAAT_IF100), (None, 10, CUI_IF10), (None, 100, CUI_IF100)])
def test_long_tail_counts_ordered(synthetic, heldout, imbalance, expected):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout=heldout, imbalance=imbalance))
    assert _class_counts(s.train) == expected == s.record["train_class_counts"]
    assert s.record["long_tail_counts"] == expected


def test_step_profile_and_n_max(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(imbalance=10, lt_profile="step", n_max=1000))
    assert _class_counts(s.train) == [1000] * 5 + [100] * 5
    with pytest.raises(ValueError, match="class 0"):
        build_scenario(synthetic, 10, ScenarioConfig(heldout="caat_meta", imbalance=10, n_max=5000))


def test_long_tail_shuffled_is_seeded_permutation(synthetic):
    cfg = ScenarioConfig(heldout="caat_meta", imbalance=10, lt_order="shuffled", seed=100)
    a, b = build_scenario(synthetic, 10, cfg), build_scenario(synthetic, 10, cfg)
    counts = _class_counts(a.train)
    assert sorted(counts, reverse=True) == CAAT_IF10 and counts != CAAT_IF10
    assert torch.equal(a.indices, b.indices)
    other = build_scenario(synthetic, 10, ScenarioConfig(**{**vars(cfg), "seed": 1}))
    assert _class_counts(other.train) != counts
    assert _class_counts(a.heldout["meta"]) == [300] * 10  # the meta set stays balanced


def test_caat_meta_split(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout="caat_meta"))
    meta = s.heldout_indices["meta"]
    assert len(s.train) == 47000 and _class_counts(s.heldout["meta"]) == [300] * 10
    assert not set(meta.tolist()) & set(s.indices.tolist())
    assert len(set(meta.tolist()) | set(s.indices.tolist())) == 50000
    # random per class: not simply the first or last 300 in dataset order
    first = [np.flatnonzero(synthetic.y.numpy() == c)[:300] for c in range(10)]
    assert set(meta.tolist()) != set(np.concatenate(first).tolist())
    assert s.record["heldout_sizes"] == {"meta": 3000}


def test_frl_meta_is_last_300_per_class_in_order(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout="frl_meta"))
    y = synthetic.y.numpy()
    expected = np.sort(np.concatenate([np.flatnonzero(y == c)[4700:5000] for c in range(10)]))
    assert s.heldout_indices["meta"].tolist() == expected.tolist() and len(s.train) == 47000


def test_cfa_val_is_first_two_percent_in_order(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout="cfa_val"))
    y = synthetic.y.numpy()
    expected = np.sort(np.concatenate([np.flatnonzero(y == c)[:100] for c in range(10)]))
    assert s.heldout_indices["val"].tolist() == expected.tolist()
    assert len(s.train) == 49000 and _class_counts(s.heldout["val"]) == [100] * 10


def test_bilaw_two_disjoint_balanced_sets(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout="bilaw", seed=3))
    m, v, t = (set(x.tolist()) for x in (s.heldout_indices["val_meta"], s.heldout_indices["val_stop"], s.indices))
    assert len(m) == len(v) == 1000 and not (m & v) and not (m & t) and not (v & t) and len(t) == 48000
    assert _class_counts(s.heldout["val_meta"]) == _class_counts(s.heldout["val_stop"]) == [100] * 10


def test_heldout_images_and_labels_match_source(synthetic):
    s = build_scenario(synthetic, 10, ScenarioConfig(heldout="caat_meta", noise="uniform", noise_ratio=1.0))
    idx = s.heldout_indices["meta"]
    assert torch.equal(s.heldout["meta"].x, synthetic.x[idx]) and torch.equal(s.heldout["meta"].y, synthetic.y[idx])
    assert torch.equal(s.train.x, synthetic.x[s.indices]) and torch.equal(s.clean_labels, synthetic.y[s.indices])


@pytest.mark.parametrize("kind, ratio, expected_rate", [
    ("uniform", 0.4, 0.36), ("uniform", 0.2, 0.18), ("flip1", 0.4, 0.4), ("flip2", 0.2, 0.2), ("pair", 0.3, 0.3)])
def test_label_noise_rates(synthetic, kind, ratio, expected_rate):
    s = build_scenario(synthetic, 10, ScenarioConfig(noise=kind, noise_ratio=ratio, seed=7))
    rec = s.record["noise"]
    changed = (s.train.y != s.clean_labels).float().mean().item()
    assert rec["realised_rate"] == pytest.approx(changed)
    assert changed == pytest.approx(expected_rate, abs=0.01)
    assert all(abs(r - expected_rate) < 0.04 for r in rec["realised_rate_per_class"])
    t = np.array(rec["transition_matrix"])
    assert np.allclose(t.sum(1), 1) and np.allclose(np.diag(t), 1 - ratio + (ratio / 10 if kind == "uniform" else 0))
    assert torch.equal(s.clean_labels, synthetic.y)  # no held-out set: everything is training
    json.dumps(s.record)


def test_flip_matrices_structure():
    rng = np.random.RandomState(0)
    t2 = transition_matrix("flip2", 0.4, 10, rng)
    t1 = transition_matrix("flip1", 0.4, 10, rng)
    tp = transition_matrix("pair", 0.4, 10, rng)
    for i in range(10):
        off2 = np.flatnonzero(np.arange(10) != i)
        assert sorted(t2[i, off2][t2[i, off2] > 0].tolist()) == [0.2, 0.2] and t2[i, i] == pytest.approx(0.6)
        assert (t1[i, off2] > 0).sum() == 1 and t1[i, off2].max() == pytest.approx(0.4)
        assert tp[i, (i + 1) % 10] == pytest.approx(0.4)


def test_resample_matches_sequential_numpy_choice():
    """The vectorised draw equals MW-Net's per-sample `np.random.choice(C, p=T[y])` loop."""
    t = transition_matrix("uniform", 0.5, 5, np.random.RandomState(0))
    y = np.random.RandomState(1).randint(0, 5, 2000)
    a, b = np.random.RandomState(9), np.random.RandomState(9)
    assert resample_labels(y, t, a).tolist() == [b.choice(5, p=t[v]) for v in y]


def test_noise_leaves_heldout_clean_and_combines_with_long_tail(synthetic):
    cfg = ScenarioConfig(heldout="caat_meta", imbalance=10, lt_order="shuffled", noise="flip2", noise_ratio=0.4)
    s = build_scenario(synthetic, 10, cfg)
    assert torch.equal(s.heldout["meta"].y, synthetic.y[s.heldout_indices["meta"]])
    assert sorted(s.record["train_class_counts"], reverse=True) == CAAT_IF10
    assert 0.3 < s.record["noise"]["realised_rate"] < 0.5
    rec = json.loads(json.dumps(s.record))
    assert ScenarioConfig(**rec["config"]) == cfg and rec["heldout_sizes"] == {"meta": 3000}


@pytest.mark.parametrize("kwargs, word", [
    (dict(heldout="caat"), "caat_meta"), (dict(noise="sym"), "uniform"),
    (dict(noise_ratio=1.5, noise="uniform"), "[0, 1]"),
    (dict(imbalance=0.5), "≥ 1"), (dict(lt_order="random"), "shuffled"), (dict(noise_ratio=0.2), "noise kind"),
    (dict(heldout_per_class=0, heldout="bilaw"), "≥ 1")])
def test_scenario_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError) as e:
        ScenarioConfig(**kwargs)
    assert word in str(e.value) and repr(next(iter(kwargs.values()))) in str(e.value)


# ---- batches / augmentation -----------------------------------------------------------------------------------

def _images(n=8, c=3, h=6, w=5):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crops_are_subwindows_of_the_padded_image(mode):
    x, p = _images(), 2
    out = augment(x, AugmentSpec(p, mode, flip=False), torch.Generator().manual_seed(1))
    offsets = torch.randint(0, 2 * p + 1, (2, len(x), 1), generator=torch.Generator().manual_seed(1))
    padded = F.pad(x, (p,) * 4, mode="constant" if mode == "zeros" else "reflect")
    for i in range(len(x)):
        oy, ox = offsets[0, i, 0].item(), offsets[1, i, 0].item()
        assert torch.equal(out[i], padded[i, :, oy:oy + 6, ox:ox + 5])
    assert len({(offsets[0, i, 0].item(), offsets[1, i, 0].item()) for i in range(len(x))}) > 1


def test_flip_flips():
    x = _images(n=64)
    out = augment(x, AugmentSpec(0, flip=True), torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_zero_and_reflect_padding_differ():
    x = _images(n=32) + 0.1
    z = augment(x, AugmentSpec(3, "zeros"), torch.Generator().manual_seed(3))
    r = augment(x, AugmentSpec(3, "reflect"), torch.Generator().manual_seed(3))
    assert (z == 0).any() and not (r == 0).any() and not torch.equal(z, r)


def test_same_seed_same_batches_and_full_coverage():
    x = (torch.arange(103 * 3 * 4 * 4) % 256).to(torch.uint8).reshape(103, 3, 4, 4)
    split = Split(x, torch.arange(103) % 10)
    stream = BatchStream(split, 16, "cpu", AugmentSpec(1, "reflect", True))
    assert len(stream) == 7 and len(BatchStream(split, 16, "cpu", drop_last=True)) == 6
    a = list(stream.epoch(torch.Generator().manual_seed(5)))
    b = list(stream.epoch(torch.Generator().manual_seed(5)))
    c = list(stream.epoch(torch.Generator().manual_seed(6)))
    assert len(a) == 7 and all(torch.equal(p[0], q[0]) and torch.equal(p[2], q[2]) for p, q in zip(a, b))
    assert not torch.equal(a[0][2], c[0][2])
    idx = torch.cat([t[2] for t in a])
    assert sorted(idx.tolist()) == list(range(103))
    assert all(torch.equal(y, split.y[i]) for _, y, i in a)
    x0 = a[0][0]
    assert x0.dtype == torch.float32 and 0 <= x0.min() and x0.max() <= 1 and x0.shape == (16, 3, 4, 4)


def test_unaugmented_stream_returns_exact_images():
    split = Split(torch.randint(0, 256, (10, 1, 3, 3), dtype=torch.uint8), torch.zeros(10, dtype=torch.int64))
    stream = BatchStream(split, 4, "cpu", AugmentSpec.for_dataset(DATASETS.get("fmnist")), shuffle=False)
    x, _, idx = next(iter(stream.epoch(torch.Generator())))
    assert idx.tolist() == [0, 1, 2, 3] and torch.equal(x, split.x[:4].float() / 255)


def _caat_code_draws(y: np.ndarray, seed: int, imbalance: int, ratio: float):
    """CAAT's `build_dataloader` (NLT_CIFAR.py) transcribed step by step: seeded global RNG; shuffle the count
    list; per class: shuffle, 300 → meta, the next n_c → train (class by class); flip2 matrix; one
    `choice(C, p=T[y])` per training sample in that order. Returns (meta, train, noisy labels of train)."""
    rng = np.random.RandomState(seed)
    counts = [int(4700 / imbalance ** (c / 9)) for c in range(10)]
    rng.shuffle(counts)
    meta, train = [], []
    for c in range(10):
        idx = [i for i, label in enumerate(y) if label == c]
        rng.shuffle(idx)
        meta += idx[:300]
        train += idx[300:][:counts[c]]
    t = np.eye(10) * (1 - ratio)
    rows = np.arange(10)
    for i in range(10):
        t[i][rng.choice(rows[rows != i], 2, replace=False)] = ratio / 2
    labels = [rng.choice(10, p=t[y[i]]) for i in train]
    return np.array(meta), np.array(train), np.array(labels)


@pytest.mark.parametrize("imbalance", [1, 10])
def test_caat_recipe_reproduces_the_codes_split_and_noisy_labels(synthetic, imbalance):
    cfg = ScenarioConfig(heldout="caat_meta", imbalance=imbalance, lt_order="shuffled", noise="flip2",
                         noise_ratio=0.2, seed=100)
    s = build_scenario(synthetic, 10, cfg)
    meta, train, labels = _caat_code_draws(synthetic.y.numpy(), 100, imbalance, 0.2)
    order = np.argsort(train)
    assert s.heldout_indices["meta"].tolist() == sorted(meta.tolist())
    assert s.indices.tolist() == train[order].tolist() and s.train.y.tolist() == labels[order].tolist()
    if imbalance == 10:
        assert s.record["long_tail_counts"] == [784, 1012, 3639, 1307, 1689, 2817, 4700, 2181, 470, 607]
    digest = hashlib.sha256(np.concatenate([s.heldout_indices["meta"].numpy(), s.indices.numpy(),
                                            s.train.y.numpy()]).tobytes()).hexdigest()[:16]
    assert digest == {1: "c30d925a664a4f34", 10: "16629dc33a34f18c"}[imbalance]  # pins the draws
