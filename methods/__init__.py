"""Method plugins. Importing this package registers every method in `METHODS` and add-on in `ADDONS`."""
from methods.addon import ADDONS, Addon
from methods.base import Batch, Method, MethodContext, NoHparams, StepOutput
from methods.registry import METHODS, build_method, resolved_hparams
from methods import natural, pgd_at, trades, mart, ema  # noqa: F401  (registration side effect)

__all__ = ["ADDONS", "Addon", "Batch", "Method", "MethodContext", "NoHparams", "StepOutput", "METHODS",
           "build_method", "resolved_hparams"]
