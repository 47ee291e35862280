"""`methods/` by family: every module imports, no module-level import cycle, every name registered before the
regroup still is, and every composition an experiment grid plans builds."""
import ast
import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.data import Split
from bench.papers import EXPERIMENTS, FIGURES
from methods import ADDONS, METHODS, MethodContext, build_method

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "methods").rglob("*.py"))

# Registered on `import methods` before the regroup (commit b4bd6ee); users and experiment files type these.
NAMES_BEFORE = {
    "method": {"baseline_reweight", "bilaw", "bilaw_np", "bilaw_trades", "caat", "fat", "frl_rm", "frl_rw", "frl_rwrm",
               "gairat", "gradalign", "hat", "iat", "mail_at", "mail_trades", "mart", "natural", "nfgsm", "pgd_at",
               "rs_fgsm", "trades", "uiat", "uiat_oneoff", "wmmr", "at"},
    "add-on": {"ccm", "ccr", "cfa", "ema", "fawa", "uiat"},
}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module):
    importlib.import_module(module)


def _imports(module: str) -> set[str]:
    """The `methods.*` modules `module` imports at module level (what runs when it is first imported)."""
    path = ROOT / (module.replace(".", "/") + ("/__init__.py" if (ROOT / module.replace(".", "/")).is_dir() else ".py"))
    found = set()
    for node in ast.parse(path.read_text()).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        found |= {n for n in names if n.split(".")[0] == "methods"}
    return found


def test_module_level_imports_have_no_cycle():
    """Checked on the import graph: `import methods` fixes one import order, so a cycle between two modules could
    hide until someone imports the other one first."""
    graph = {m: {i for i in _imports(m) if i in MODULES and i != "methods"} for m in MODULES if m != "methods"}
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_name_registered_before_the_regroup_still_is():
    assert NAMES_BEFORE["method"] <= set(METHODS) | {"at"} and METHODS.canonical("at") == "pgd_at"
    assert NAMES_BEFORE["add-on"] <= set(ADDONS)


def _planned_compositions() -> dict[str, dict]:
    """Each `base+add-on...` an experiment or figure plans (any profile), with the hyperparameters of one run."""
    found: dict[str, dict] = {}
    for registry in (EXPERIMENTS, FIGURES):
        for name in registry:
            item = registry.get(name)
            for profile in getattr(item, "profiles", ("paper", "fast", "smoke")):
                for run in item.runs(profile):
                    if run.config is not None and "+" in run.config.method:
                        found.setdefault(run.config.method, dict(run.config.hp))
    return found


def test_every_composition_an_experiment_plans_builds():
    compositions = _planned_compositions()
    assert {"pgd_at+cfa", "trades+cfa", "fat+cfa", "trades+ccm+ccr", "rs_fgsm+uiat"} <= set(compositions)
    split = Split(torch.zeros((6, 1, 2, 2), dtype=torch.uint8), torch.tensor([0, 0, 1, 1, 2, 2]))
    ctx = MethodContext(num_classes=3, eps=0.1, step_size=0.025, attack_steps=2, epochs=4, steps_per_epoch=2,
                        class_counts=(2, 2, 2), heldout={"meta": split, "val": split, "val_meta": split},
                        device=torch.device("cpu"), fidelity="paper", new_model=lambda: nn.Linear(4, 3),
                        image_shape=(1, 2, 2), batch_size=2)
    for name, hp in compositions.items():
        assert set(build_method(name, hp, ctx).addons) == set(name.split("+")[1:]), name
