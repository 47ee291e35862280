"""On-disk cache of decoded images, so JPEG data sets are decoded once per machine, not once per run."""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np

from bench import atomic


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "bench").expanduser()


def _fingerprint(sources: list[Path]) -> str:
    """Path, size and mtime of every source file: a changed or moved source gets a fresh cache entry."""
    h = hashlib.sha256()
    for p in sources:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def cached_arrays(name: str, sources: list[Path], make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`make()`'s arrays, from `<cache>/<name>-<fingerprint>.npz` when present, else computed and stored.

    The file is written atomically (temp + rename), so a killed or concurrent run never reads half a cache.
    """
    path = cache_dir() / f"{name}-{_fingerprint(sources)}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = make()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic.write_bytes(path, buf.getbuffer())
    return arrays
