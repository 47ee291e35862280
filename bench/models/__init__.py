"""Model architectures behind one registry; every model normalizes its input itself (pixel-unit attacks).

`build_model(name, num_classes, in_channels=3, image_size=32, mean=None, std=None)`;
`model(x)` → logits, `model(x, return_features=True)` → (logits, penultimate features).
"""
from bench.models import preact_resnet, resnet, small_nets, wide_resnet  # noqa: F401  (register the models)
from bench.models.normalize import Classifier, Normalize
from bench.models.registry import MODELS, ModelSpec, build_model, describe

__all__ = ["MODELS", "ModelSpec", "Classifier", "Normalize", "build_model", "describe"]
