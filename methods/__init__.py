"""Method plugins, one subpackage per family (core, standard, reweighting, fairness, cfa, caat, bilaw, inverse).
Importing this package imports every module under it, which registers each method in `METHODS` and each add-on
in `ADDONS` (a new plugin file needs no other edit)."""
import importlib
import pkgutil

from methods.core.addon import ADDONS, Addon
from methods.core.base import Batch, Method, MethodContext, NoHparams, StepOutput
from methods.core.registry import (METHODS, build_method, canonical_hparams, canonical_name, check_norm,
                                   required_heldout, resolved_hparams)

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)

__all__ = ["ADDONS", "Addon", "Batch", "Method", "MethodContext", "NoHparams", "StepOutput", "METHODS",
           "build_method", "canonical_hparams", "canonical_name", "check_norm", "required_heldout", "resolved_hparams"]
