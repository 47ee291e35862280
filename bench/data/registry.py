"""What the bench knows about each dataset before loading it: shape, threat model, normalisation, augmentation."""
from __future__ import annotations

from dataclasses import dataclass

from bench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    shape: tuple[int, int, int]  # C, H, W
    default_eps: float  # L∞ budget in pixel units ([0,1] images)
    default_step: float
    mean: tuple[float, ...]  # for the normalisation layer inside the model (as in CFA's and CAAT's code)
    std: tuple[float, ...]
    crop_padding: int  # default train augmentation: random crop of the original size after padding
    pad_mode: str  # "zeros" | "reflect"
    flip: bool  # random horizontal flip
    class_names: tuple[str, ...]  # () where the names come with the data (Tiny-ImageNet wnids)

    def __post_init__(self) -> None:
        if self.pad_mode not in ("zeros", "reflect"):
            raise ValueError(f"pad_mode={self.pad_mode!r}; allowed: 'zeros', 'reflect'")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if not len(self.mean) == len(self.std) == self.shape[0]:
            raise ValueError(f"{self.name}: mean/std need one entry per channel ({self.shape[0]})")


DATASETS: Registry[DatasetInfo] = Registry("dataset")

_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DIGITS = tuple(str(d) for d in range(10))
_CIFAR100_NAMES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())

# Grey-scale sets follow Wong & Kolter / BiLAW: ε = 0.1, step ε/4, no augmentation.
# Colour sets: ε = 8/255, step 2/255, crop with 4-pixel zero padding (+ flip) as in TRADES/MART/FRL;
# CFA/CAAT use reflect padding, which a run can ask for explicitly (CFA's and CAAT's code).
_GREY = dict(default_eps=0.1, default_step=0.025, crop_padding=0, pad_mode="zeros", flip=False)
_COLOUR = dict(default_eps=8 / 255, default_step=2 / 255, crop_padding=4, pad_mode="zeros", flip=True)

for _info in (
    DatasetInfo("fmnist", 10, (1, 28, 28), mean=(0.2860,), std=(0.3530,), class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        **_GREY),
    DatasetInfo("mnist", 10, (1, 28, 28), mean=(0.1307,), std=(0.3081,), class_names=_DIGITS, **_GREY),
    # Measured on the decoded JPEGs (README of the data set), not the original CIFAR-10 values.
    DatasetInfo("cifar10-jpeg", 10, (3, 32, 32), mean=(0.4913, 0.4821, 0.4465), std=(0.2452, 0.2428, 0.2606),
                class_names=_CIFAR10_NAMES, **_COLOUR),
    DatasetInfo("cifar10", 10, (3, 32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616),
                class_names=_CIFAR10_NAMES, **_COLOUR),
    DatasetInfo("cifar100", 100, (3, 32, 32), mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                class_names=_CIFAR100_NAMES, **_COLOUR),
    # SVHN: no flip (digits are not mirror-symmetric) [AMBIG; Wong/N-FGSM do flip].
    DatasetInfo("svhn", 10, (3, 32, 32), mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
                class_names=_DIGITS, **{**_COLOUR, "flip": False}),
    DatasetInfo("tinyimagenet", 200, (3, 64, 64), mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262),
                class_names=(), **_COLOUR),
):
    DATASETS.register(_info.name)(_info)
