"""Data: registered data sets as compact uint8 Splits, scenario generators (held-out sets, long tail,
label noise) and on-device minibatch streams with augmentation."""
from bench.data.loaders import MissingDatasetError, load_dataset, locate
from bench.data.registry import DATASETS, DatasetInfo
from bench.data.split import Split

__all__ = ["DATASETS", "DatasetInfo", "MissingDatasetError", "Split", "load_dataset", "locate"]
