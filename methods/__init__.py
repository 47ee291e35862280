"""Method plugins. Importing this package imports every module in it, which registers each method in
`METHODS` and each add-on in `ADDONS` (a new plugin file needs no other edit)."""
import importlib
import pkgutil

from methods.addon import ADDONS, Addon
from methods.base import Batch, Method, MethodContext, NoHparams, StepOutput
from methods.registry import (METHODS, build_method, canonical_hparams, canonical_name, check_norm,
                              required_heldout, resolved_hparams)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADDONS", "Addon", "Batch", "Method", "MethodContext", "NoHparams", "StepOutput", "METHODS",
           "build_method", "canonical_hparams", "canonical_name", "check_norm", "required_heldout", "resolved_hparams"]
