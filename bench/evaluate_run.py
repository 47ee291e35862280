"""Evaluate a stored run's checkpoint after the fact (`python -m bench eval`).

Results are merged into `eval-<checkpoint>.json` in the run folder, one entry per attack, so
adding AutoAttack later to a run keeps its earlier PGD numbers beside it.
"""
from __future__ import annotations

import json
from typing import Any

import torch

from bench import atomic
from bench.checkpoint_io import load_checkpoint
from bench.data import DATASETS, load_dataset
from bench.store import RunDir
from bench.train import Runtime, attack_budget, evaluate_model, evaluation_step, make_model


def evaluate_stored(run: RunDir, checkpoint: str, attacks: tuple[str, ...], aa_n: int | None,
                    device: torch.device, data_root: str | None = None) -> dict[str, Any]:
    cfg = run.config()
    path = run.best_ckpt if checkpoint == "best" else run.last_ckpt
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (has the run finished an epoch? see `python -m bench status`)")
    rt = Runtime(device, data_root)
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    step = evaluation_step(cfg, step)
    ckpt = load_checkpoint(path, device)
    model = make_model(cfg, info, rt)
    model.load_state_dict(ckpt["model"])
    _, test = load_dataset(cfg.dataset, data_root)
    result = evaluate_model(model, test.to(device), info, attacks, None, aa_n, eps, step, rt, cfg.seed,
                            norm=cfg.norm)
    out_file = run.path / f"eval-{checkpoint}.json"
    merged = json.loads(out_file.read_text()) if out_file.exists() else {}
    attacks = {**merged.get("attacks", {}), **result["attacks"]}  # earlier attacks stay beside the new ones
    merged.update(result)
    merged["attacks"] = attacks
    merged["epoch"] = ckpt["epoch"]
    atomic.write_json(out_file, merged)
    return result
