"""Crash-safe file writes: write a temp file beside the target, fsync, then rename over it; strict reads.

A reader therefore sees either the old complete file or the new complete file, never a torn one,
whatever moment a run is killed at (a kill leaves at most a `.<name>.<random>.tmp` beside it, which
remove_stale_temps deletes on the next open of the run). JSON is written and read strictly (no NaN or
Infinity, which RFC 8259 does not allow and strict parsers reject); a file that does not parse raises
DamagedFile, one line naming the file and the reason.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

TEMP_SUFFIX = ".tmp"


class DamagedFile(ValueError):
    """A file of the run record that cannot be read as written: its one-line message names it and says why."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: damaged: {reason}")


def _atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    try:
        text = json_text(obj, indent=2)
    except ValueError as err:
        raise ValueError(f"{path}: not written: {err} (strict JSON has no NaN or Infinity)") from None
    write_text(path, text + "\n")


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (a NaN or infinity raises ValueError instead of writing a bare `NaN` token)."""
    return json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(text: str) -> Any:
    """json.loads that also refuses NaN/Infinity/-Infinity."""
    return json.loads(text, parse_constant=_refuse_constant)


def read_json(path: Path) -> Any:
    """The JSON content of `path`, or DamagedFile naming it (empty, torn, not JSON, NaN)."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DamagedFile(path, "not UTF-8 text") from None
    if not text.strip():
        raise DamagedFile(path, "empty")
    try:
        return parse_json(text)
    except ValueError as err:
        raise DamagedFile(path, f"not valid JSON: {err}") from None


def remove_stale_temps(folder: Path, keep: tuple[str, ...] = ()) -> list[Path]:
    """Delete the temp files that killed writes left in `folder`, except those of the targets named in `keep`
    (files another process may be writing right now); returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if not any(tmp.name.startswith(f".{name}.") for name in keep):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def torch_save(path: Path, obj: Any) -> None:
    """A plain torch file for use outside the bench (an export); the run record's own checkpoints go through
    bench.checkpoint_io, which adds the checksum."""
    import torch

    _atomic(path, lambda f: torch.save(obj, f))
