"""Checkpoints that cannot run code and cannot be silently wrong.

A checkpoint file is one header line, `BENCHCKPT1 <sha256 of the payload> <json meta>`, followed by the
`torch.save` payload, written atomically (bench/atomic.py), so the checksum always lands with the bytes it
describes. Loading verifies the checksum, then unpickles with `torch.load(..., weights_only=True)`: a planted
`last.pt` whose pickle would call a function is refused, not run (PyTorch's "Serialization semantics" notes:
weights_only=False "can result in arbitrary code execution"). numpy arrays and scalars (numpy's RNG state,
methods' numpy buffers), which weights_only refuses, are stored as tagged byte tensors and restored exactly.
Any failure raises `DamagedFile`, one line naming the file and the reason.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import atomic
from bench.atomic import DamagedFile

MAGIC = b"BENCHCKPT1 "
_ARRAY, _SCALAR = "__bench_ndarray__", "__bench_npscalar__"


def _encode(obj: Any) -> Any:
    """numpy values → plain containers of tensors (what weights_only=True loads); everything else unchanged."""
    if isinstance(obj, np.ndarray):
        data = torch.frombuffer(bytearray(np.ascontiguousarray(obj).tobytes()), dtype=torch.uint8) if obj.size else \
            torch.zeros(0, dtype=torch.uint8)
        return {_ARRAY: data, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {_SCALAR: _encode(np.asarray(obj))}
    if isinstance(obj, dict):
        return _same_mapping(obj, ((k, _encode(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        items = [_encode(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def _same_mapping(obj: dict, items: Any) -> dict:
    """dict or OrderedDict (optimizer and module state) as they were; other mappings become dicts."""
    return type(obj)(items) if type(obj) in (dict, OrderedDict) else dict(items)


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if _ARRAY in obj:
            raw = obj[_ARRAY].cpu().numpy().tobytes()
            return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        if _SCALAR in obj:
            return _decode(obj[_SCALAR])[()]
        return _same_mapping(obj, ((k, _decode(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_decode(v) for v in obj)
    return obj


def save_checkpoint(path: Path, obj: Any, meta: dict[str, Any] | None = None) -> None:
    """Write `obj` atomically with its checksum; `meta` (small JSON) is readable without loading (read_meta)."""
    buffer = io.BytesIO()
    torch.save(_encode(obj), buffer)
    payload = buffer.getvalue()
    header = MAGIC + f"{hashlib.sha256(payload).hexdigest()} {json.dumps(meta or {}, sort_keys=True)}\n".encode()
    atomic.write_bytes(path, header + payload)


def _split(path: Path, data: bytes) -> tuple[str, dict[str, Any], bytes]:
    end = data.find(b"\n")
    if end < 0:
        raise DamagedFile(path, f"truncated: {len(data)} bytes, no complete checksum line")
    try:
        digest, meta = data[len(MAGIC):end].decode().split(" ", 1)
        return digest, json.loads(meta), data[end + 1:]
    except (UnicodeDecodeError, ValueError):
        raise DamagedFile(path, "unreadable checksum line") from None


def read_meta(path: Path) -> dict[str, Any] | None:
    """The header's meta of a bench checkpoint without reading the payload; None if absent or not one."""
    try:
        with open(path, "rb") as f:
            line = f.readline(4096)
        return _split(path, line)[1] if line.startswith(MAGIC) else None
    except (OSError, DamagedFile):
        return None


def load_checkpoint(path: Path, map_location: Any = "cpu", *, require_checksum: bool = True) -> Any:
    """The object saved by save_checkpoint, checksum verified, unpickled with weights_only=True.
    require_checksum=False also accepts a plain torch file (weights handed in from outside the bench, e.g. a
    RobustBench model or a helper model file), still with weights_only=True."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedFile(path, "missing") from None
    except OSError as err:
        raise DamagedFile(path, f"unreadable: {err.strerror}") from None
    if not data:
        raise DamagedFile(path, "empty (0 bytes)")
    if data.startswith(MAGIC):
        digest, _, payload = _split(path, data)
        if hashlib.sha256(payload).hexdigest() != digest:
            raise DamagedFile(path, f"checksum mismatch ({len(payload)} payload bytes): truncated or altered")
    elif require_checksum:
        raise DamagedFile(path, "no bench checksum line: not written by this bench (or by a version before "
                                "checksums); refusing to load it as a run checkpoint")
    else:
        payload = data
    try:
        obj = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors of any kind: a refused global, a torn zip, a bad tensor
        reason = " ".join(str(err).split())
        raise DamagedFile(path, f"not loadable with weights_only=True: {reason[:300]}") from None
    return _decode(obj)
