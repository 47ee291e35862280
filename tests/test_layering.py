"""The framework (bench.experiments) and the papers' content (bench.papers) form layers: papers import the
framework, never the reverse, and no module of either imports itself back through another.

Each module is imported on its own, with every `bench` and `methods` module dropped from `sys.modules`
first, so a module that only works when something else was imported before it fails here.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import bench

ROOT = Path(bench.__file__).resolve().parent
LAYERS = ("experiments", "papers")


def modules(layer: str) -> list[str]:
    names = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported(path: Path, package: str) -> set[str]:
    """Modules a file names in its import statements, at any depth (functions included); `from X import y`
    counts X.y when y is a module of the bench, else X."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base for alias in node.names}
    return found


def module_path(name: str) -> Path:
    path = ROOT.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_module(name: str) -> bool:
    return name.split(".")[0] == "bench" and module_path(name).exists()


def test_every_module_imports_on_its_own_and_the_framework_loads_no_paper():
    names = modules("experiments") + modules("papers")
    script = f"""
import importlib, json, sys
out = {{}}
for name in {names!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("bench", "methods")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
        out[name] = sorted(m for m in sys.modules if m.startswith("bench.papers"))
    except Exception as error:
        out[name] = f"{{type(error).__name__}}: {{error}}"
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT.parent,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    failed = {name: why for name, why in loaded.items() if isinstance(why, str)}
    assert not failed
    assert {name: papers for name, papers in loaded.items() if name.startswith("bench.experiments") and papers} == {}
    assert "bench.papers.bilaw.tables" in loaded["bench.papers"]  # importing the catalogue registers the papers


def test_the_framework_names_no_paper_module():
    for name in modules("experiments"):
        papers = {m for m in imported(module_path(name), name) if m.startswith("bench.papers")}
        assert not papers, f"{name} imports {sorted(papers)}: the framework must not depend on a paper"


def test_no_import_cycle_within_the_two_layers():
    names = set(modules("experiments") + modules("papers"))
    graph = {name: {m for m in imported(module_path(name), name) if m in names and m != name} for name in names}
    closed: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(graph[name]):
            assert target not in path, "import cycle: " + " → ".join(path[path.index(target):] + [target])
            if target not in closed:
                visit(target, path + [target])
        closed.add(name)

    for name in sorted(names):
        visit(name, [name])
