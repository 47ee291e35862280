"""Method plugins. Importing this package registers every method in `METHODS`."""
from methods.base import Batch, Method, MethodContext, NoHparams, StepOutput
from methods.registry import METHODS, build_method, resolved_hparams
from methods import natural, pgd_at, trades, mart  # noqa: F401  (registration side effect)

__all__ = ["Batch", "Method", "MethodContext", "NoHparams", "StepOutput", "METHODS", "build_method", "resolved_hparams"]
