"""Reading each data set from disk into (train, test) Splits; nothing is ever downloaded.

Where a data set is missing, one MissingDatasetError says which data set, every path looked at, and
what to put there, so a run on a fresh machine fails in its first second with an actionable message.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from bench.data.cache import cached_arrays
from bench.data.registry import DATASETS
from bench.data.split import Split
from bench.progress import progress
from bench.registry import Registry

Loader = Callable[[str | None], tuple[Split, Split]]
LOADERS: Registry[Loader] = Registry("dataset loader")
Locator = Callable[[str | None], Path]
LOCATORS: Registry[Locator] = Registry("dataset locator")  # where the files are, without reading them

_ROOT_HINT = "or run with --data-root DIR / BENCH_DATA_ROOT=DIR"
_REPO = Path(__file__).resolve().parents[2]  # the checkout holding the bench package
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class MissingDatasetError(FileNotFoundError):
    """A data set's files are not where the bench looked; the message says where to put them."""


def data_root(explicit: str | None = None) -> Path:
    """The data root: the argument, else $BENCH_DATA_ROOT, else ~/data."""
    return Path(explicit or os.environ.get("BENCH_DATA_ROOT") or Path.home() / "data").expanduser()


def load_dataset(name: str, data_root: str | None = None) -> tuple[Split, Split]:
    """(train, test) of a registered data set, checked against its registry entry."""
    info = DATASETS.get(name)
    train, test = LOADERS.get(name)(data_root)
    for part, split in (("train", train), ("test", test)):
        if tuple(split.x.shape[1:]) != info.shape:
            raise ValueError(f"{name} {part}: images of shape {tuple(split.x.shape[1:])}, registry says {info.shape}")
        if len(split) and not 0 <= int(split.y.min()) <= int(split.y.max()) < info.num_classes:
            raise ValueError(f"{name} {part}: labels outside 0..{info.num_classes - 1}")
    return train, test


def locate(name: str, data_root: str | None = None) -> Path:
    """The folder holding a data set's files, found without reading them (a dry run asks this of every run);
    MissingDatasetError, saying what to put where, when they are absent."""
    return LOCATORS.get(name)(data_root)


def _missing(name: str, looked: Sequence[Path], what: str) -> MissingDatasetError:
    where = ", ".join(str(p) for p in looked)
    return MissingDatasetError(f"dataset '{name}' not found; looked in: {where}. {what}")


def _split(x: np.ndarray, y: np.ndarray | Sequence[int]) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.asarray(y), dtype=torch.int64))


# ---- IDX (MNIST-style) ----------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (plain or .gz)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        data = bytearray(f.read())  # writable, so torch can share the memory
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, file holds {arr.size} bytes (truncated?)")
    return arr.reshape(dims)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in `folder` (each plain or .gz), or None if any is missing."""
    found = {}
    for base in (b for pair in _IDX_FILES.values() for b in pair):
        hits = [folder / n for n in (base, base + ".gz") if (folder / n).is_file()]
        if not hits:
            return None
        found[base] = hits[0]
    return found


def _idx_folder(name: str, candidates: Sequence[Path], what: str) -> Path:
    folder = next((c for c in candidates if _idx_files(c) is not None), None)
    if folder is None:
        raise _missing(name, candidates, what)
    return folder


def _load_idx(folder: Path) -> tuple[Split, Split]:
    files = _idx_files(folder)
    assert files is not None, folder  # located before
    x_tr, y_tr, x_te, y_te = (read_idx(files[b]) for pair in _IDX_FILES.values() for b in pair)
    return _split(x_tr[:, None], y_tr), _split(x_te[:, None], y_te)


@LOCATORS.register("fmnist")
def locate_fmnist(root: str | None = None) -> Path:
    """Fashion-MNIST from $BENCH_FMNIST_DIR, the data root, or the Debian package `dataset-fashion-mnist`."""
    what = ("Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
            "t10k-labels-idx1-ubyte.gz there (apt install dataset-fashion-mnist provides them), "
            f"set BENCH_FMNIST_DIR=DIR, {_ROOT_HINT}.")
    if os.environ.get("BENCH_FMNIST_DIR"):
        return _idx_folder("fmnist", [Path(os.environ["BENCH_FMNIST_DIR"]).expanduser()], what)
    explicit = [data_root(root) / "fashion-mnist", data_root(root) / "FashionMNIST" / "raw"] if root else []
    default = [data_root() / "fashion-mnist", data_root() / "FashionMNIST" / "raw"]
    return _idx_folder("fmnist", [*explicit, Path("/usr/share/datasets/fashion-mnist"), *default], what)


@LOADERS.register("fmnist")
def load_fmnist(root: str | None = None) -> tuple[Split, Split]:
    return _load_idx(locate_fmnist(root))


@LOCATORS.register("mnist")
def locate_mnist(root: str | None = None) -> Path:
    folder = data_root(root) / "MNIST" / "raw"
    return _idx_folder("mnist", [folder], f"Put the four MNIST IDX files (train-images-idx3-ubyte[.gz], "
                       f"train-labels-idx1-ubyte[.gz], t10k-...) in {folder}/ (torchvision MNIST layout) "
                       f"{_ROOT_HINT}.")


@LOADERS.register("mnist")
def load_mnist(root: str | None = None) -> tuple[Split, Split]:
    return _load_idx(locate_mnist(root))


# ---- JPEG decoding --------------------------------------------------------------------------------------------

def _decode_images(n: int, source: Callable[[int], object], desc: str) -> np.ndarray:
    """n images (`source(i)`: a path or file object) decoded to uint8 RGB, stacked N×C×H×W."""
    from PIL import Image

    out: np.ndarray | None = None
    for i in progress(range(n), desc=desc, total=n):
        with Image.open(source(i)) as im:
            img = np.asarray(im.convert("RGB"))
        if out is None:
            out = np.empty((n, *img.shape), np.uint8)
        out[i] = img
    if out is None:
        raise ValueError(f"{desc}: no images")
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _decode_jpeg_npz(path: Path, desc: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        jpeg, offsets, labels, classes = z["jpeg"], z["offsets"], z["labels"], z["classes"]
    x = _decode_images(len(labels), lambda i: io.BytesIO(jpeg[offsets[i]:offsets[i + 1]]), desc)
    return {"x": x, "y": labels.astype(np.int64), "classes": classes}


CIFAR10_JPEG_ORDER_SEED = 0


@LOCATORS.register("cifar10-jpeg")
def locate_cifar10_jpeg(root: str | None = None) -> Path:
    if os.environ.get("BENCH_CIFAR10_JPEG"):
        candidates = [Path(os.environ["BENCH_CIFAR10_JPEG"]).expanduser()]
    else:
        candidates = [*([data_root(root) / "cifar10-jpeg"] if root else []),
                      _REPO.parent / "shared" / "data" / "cifar10-jpeg", data_root() / "cifar10-jpeg"]
    folder = next((c for c in candidates if (c / "train.npz").is_file() and (c / "test.npz").is_file()), None)
    if folder is None:
        raise _missing("cifar10-jpeg", candidates, "Put train.npz and test.npz (arrays jpeg, offsets, labels, "
                       f"classes) in one of them, set BENCH_CIFAR10_JPEG=DIR, {_ROOT_HINT}.")
    return folder


@LOADERS.register("cifar10-jpeg")
def load_cifar10_jpeg(root: str | None = None) -> tuple[Split, Split]:
    """CIFAR-10 as JPEG bytes (shared/data/cifar10-jpeg), decoded once and cached (bench.data.cache).

    The mirror stores each split sorted by class; a fixed permutation per split (seed CIFAR10_JPEG_ORDER_SEED)
    mixes them, so that "the first N test images" (per-epoch evaluation, AutoAttack subsets) and
    `train_limit` draw every class, as they do on CIFAR-10's own order.
    """
    folder = locate_cifar10_jpeg(root)
    expected = DATASETS.get("cifar10-jpeg").class_names
    splits = []
    for part in ("train", "test"):
        npz = folder / f"{part}.npz"
        arrays = cached_arrays(f"cifar10-jpeg-{part}", [npz],
                               lambda: _decode_jpeg_npz(npz, f"decoding cifar10-jpeg {part}"))
        if tuple(str(c) for c in arrays["classes"]) != expected:
            raise ValueError(f"{npz}: class order {list(arrays['classes'])} differs from the registry's "
                             f"{list(expected)}")
        order = np.random.default_rng(CIFAR10_JPEG_ORDER_SEED).permutation(len(arrays["y"]))
        splits.append(_split(arrays["x"][order], arrays["y"][order]))
    return splits[0], splits[1]


@LOCATORS.register("tinyimagenet")
def locate_tinyimagenet(root: str | None = None) -> Path:
    base = data_root(root) / "tiny-imagenet-200"
    if not ((base / "wnids.txt").is_file() and (base / "val" / "val_annotations.txt").is_file()
            and (base / "train").is_dir()):
        raise _missing("tinyimagenet", [base], f"Extract tiny-imagenet-200.zip so that {base}/wnids.txt, "
                       f"{base}/train/<wnid>/images/*.JPEG and {base}/val/val_annotations.txt exist {_ROOT_HINT}.")
    return base


@LOADERS.register("tinyimagenet")
def load_tinyimagenet(root: str | None = None) -> tuple[Split, Split]:
    """Tiny-ImageNet-200: train/<wnid>/images/*.JPEG (100k) and the labelled val set (10k) as the test set.

    Classes are the sorted wnids (torchvision ImageFolder order).
    """
    base = locate_tinyimagenet(root)
    wnids_file, ann = base / "wnids.txt", base / "val" / "val_annotations.txt"

    def decode() -> dict[str, np.ndarray]:
        wnids = sorted(wnids_file.read_text().split())
        cls = {w: c for c, w in enumerate(wnids)}
        train = [(p, c) for w, c in cls.items() for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
        rows = [line.split("\t")[:2] for line in ann.read_text().splitlines() if line.strip()]
        test = [(base / "val" / "images" / f, cls[w]) for f, w in rows]
        out = {}
        for part, items in (("train", train), ("test", test)):
            out[f"x_{part}"] = _decode_images(len(items), lambda i: items[i][0], f"decoding tinyimagenet {part}")
            out[f"y_{part}"] = np.array([c for _, c in items], np.int64)
        return out

    arrays = cached_arrays("tinyimagenet", [wnids_file, ann, base / "train", base / "val" / "images"], decode)
    return _split(arrays["x_train"], arrays["y_train"]), _split(arrays["x_test"], arrays["y_test"])


# ---- torchvision-format sets ----------------------------------------------------------------------------------

def _require(name: str, files: Sequence[Path], what: str) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise _missing(name, [missing[0].parent], f"Missing {', '.join(f.name for f in missing)}. {what}")


def _torchvision(name: str, make: Callable[[bool], object], where: Path, what: str) -> tuple[object, object]:
    try:
        return make(True), make(False)
    except RuntimeError as e:  # torchvision's integrity check: files present but wrong
        raise MissingDatasetError(f"dataset '{name}' at {where} is incomplete or corrupt ({e}). {what}") from e


CIFAR_FILES = {  # name → (folder, files, archive)
    "cifar10": ("cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
                "cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ("train", "test", "meta"), "cifar-100-python.tar.gz"),
}


def _cifar_what(name: str, root: str | None) -> str:
    folder, _, archive = CIFAR_FILES[name]
    return (f"Put the python-version archive ({archive}) extracted as {data_root(root) / folder}/ (torchvision "
            f"{'CIFAR10' if name == 'cifar10' else 'CIFAR100'} layout) {_ROOT_HINT}.")


def _locate_cifar(name: str, root: str | None) -> Path:
    folder, files, _ = CIFAR_FILES[name]
    base = data_root(root)
    _require(name, [base / folder / f for f in files], _cifar_what(name, root))
    return base


def _cifar(name: str, root: str | None) -> tuple[Split, Split]:
    import torchvision

    base, what = _locate_cifar(name, root), _cifar_what(name, root)
    folder = CIFAR_FILES[name][0]
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    tr, te = _torchvision(name, lambda train: cls(str(base), train=train, download=False), base / folder, what)
    return tuple(_split(d.data.transpose(0, 3, 1, 2), d.targets) for d in (tr, te))  # type: ignore[return-value]


for _name in CIFAR_FILES:
    LOCATORS.register(_name)(lambda root=None, _name=_name: _locate_cifar(_name, root))
    LOADERS.register(_name)(lambda root=None, _name=_name: _cifar(_name, root))


def _svhn_what(root: str | None) -> str:
    return (f"Put train_32x32.mat and test_32x32.mat (format 2, torchvision SVHN layout) in {data_root(root)}/ "
            f"{_ROOT_HINT}.")


@LOCATORS.register("svhn")
def locate_svhn(root: str | None = None) -> Path:
    base = data_root(root)
    _require("svhn", [base / "train_32x32.mat", base / "test_32x32.mat"], _svhn_what(root))
    return base


@LOADERS.register("svhn")
def load_svhn(root: str | None = None) -> tuple[Split, Split]:
    """SVHN train (73,257) and test (26,032); torchvision maps digit label 10 to 0."""
    import torchvision

    base, what = locate_svhn(root), _svhn_what(root)
    tr, te = _torchvision("svhn", lambda train: torchvision.datasets.SVHN(
        str(base), split="train" if train else "test", download=False), base, what)
    return tuple(_split(d.data, d.labels) for d in (tr, te))  # type: ignore[return-value]
