"""Progress bars for long loops that stay quiet where nobody watches (CI, logs, pipes)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    """No bars under CI, when BENCH_QUIET is set, or when stderr is not a terminal."""
    return bool(os.environ.get("CI") or os.environ.get("BENCH_QUIET")) or not sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterable[T]:
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet(), dynamic_ncols=True)
