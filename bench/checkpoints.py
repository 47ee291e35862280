"""A run's kept model weights, one file per (series, epoch): `checkpoints/<series>-e<epoch>.pt`.

Series "" is the trained model (file prefix `model`), others are its averaged copies ("ema", "fawa"); epochs
are 0-based as in records.jsonl. Training writes the weights of the epochs some selection rule could still
pick and deletes the others (bench.selection, bench.training.retain), so a checkpoint is stored once however
many rules pick it. Checkpoints are referred to by name (`resolve_name`): `last`, `last_<series>`, `best`,
`best_<series>` (under a selection rule) or `<series>@e<epoch>` (e.g. `model@e11`, `ema@e19`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.checkpoint_io import load_checkpoint, save_checkpoint

MODEL = "model"  # the file prefix of series ""
FILE = re.compile(r"(?P<series>[a-z0-9_]+)-e(?P<epoch>[0-9]+)\.pt")
LITERAL = re.compile(r"(?P<series>[a-z0-9_]+)@e(?P<epoch>[0-9]+)")


@dataclass(frozen=True, order=True)
class Checkpoint:
    series: str  # "" = the trained model
    epoch: int  # 0-based

    @property
    def label(self) -> str:
        return f"{self.series or MODEL}@e{self.epoch}"

    @property
    def file_name(self) -> str:
        return f"{self.series or MODEL}-e{self.epoch:04d}.pt"

    @classmethod
    def parse(cls, text: str) -> "Checkpoint":
        m = LITERAL.fullmatch(text)
        if m is None:
            raise ValueError(f"checkpoint {text!r} is not of the form <series>@e<epoch> (e.g. model@e11, ema@e19)")
        series = m["series"]
        return cls("" if series == MODEL else series, int(m["epoch"]))


@dataclass(frozen=True)
class CheckpointStore:
    folder: Path  # <run>/checkpoints

    def path(self, ckpt: Checkpoint) -> Path:
        return self.folder / ckpt.file_name

    def stored(self) -> set[Checkpoint]:
        if not self.folder.is_dir():
            return set()
        out = set()
        for p in self.folder.iterdir():
            m = FILE.fullmatch(p.name)
            if m is not None:
                out.add(Checkpoint("" if m["series"] == MODEL else m["series"], int(m["epoch"])))
        return out

    def save(self, ckpt: Checkpoint, state: dict[str, torch.Tensor]) -> None:
        save_checkpoint(self.path(ckpt), {"model": state, "series": ckpt.series, "epoch": ckpt.epoch})

    def load(self, ckpt: Checkpoint, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        path = self.path(ckpt)
        if not path.is_file():
            kept = ", ".join(c.label for c in sorted(self.stored())) or "none"
            raise FileNotFoundError(f"checkpoint {ckpt.label} is not kept in {self.folder} (kept: {kept})")
        return load_checkpoint(path, device)["model"]

    def prune(self, keep: set[Checkpoint]) -> None:
        """Delete every stored checkpoint not in `keep`."""
        for ckpt in self.stored() - keep:
            self.path(ckpt).unlink(missing_ok=True)
