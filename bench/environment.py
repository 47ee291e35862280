"""Where a run was trained: code commit, torch version, device, precision, compilation and CPU thread count.

Thread count and device change the float summation order, so the same run id can give slightly different
numbers on another machine; a run's folder keeps one line per training attempt (environment.jsonl) and the
reproduction ledger (bench/ledger.py) copies them next to the metrics.
"""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from bench.precision import Precision
    from bench.training.assemble import Runtime

REPO = Path(__file__).resolve().parent.parent
FILE = "environment.jsonl"


def code_commit(repo: Path = REPO) -> str | None:
    """HEAD of the checkout the code runs from, '+dirty' when tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def describe(rt: Runtime, precision: Precision) -> dict[str, Any]:
    """This training attempt's environment: "precision" says what computes on this device (bench.precision),
    "compiled" whether the model ran under torch.compile (`--compile`)."""
    device = rt.device
    cuda = device.type == "cuda"
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code_commit": code_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.machine()})",
        "precision": precision.describe(device),
        "compiled": rt.compile,
        "channels_last": rt.channels_last,
        "threads": torch.get_num_threads(),
    }


def record(run_path: Path, rt: Runtime, precision: Precision) -> None:
    """Append this training attempt's environment to the run's environment.jsonl."""
    with open(run_path / FILE, "a") as f:
        f.write(json.dumps(describe(rt, precision), sort_keys=True) + "\n")


def attempts(run_path: Path) -> list[dict[str, Any]]:
    """Every recorded training attempt of a run (empty for runs trained before this file existed)."""
    path = run_path / FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
