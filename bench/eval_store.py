"""Evaluations as keyed artifacts: one JSON file per (kept checkpoint, attack spec, seed) under the run folder.

    <run>/evals/<series>-e<epoch>/<attack>-<digest>.json

The digest hashes the full attack spec (kind, norm, ε, steps, step size, init, κ, restarts, n) and the seed,
so a different budget or subset is a different file and an identical request reuses the file (RobustBench
keeps evaluations as data about a checkpoint in the same way). A file holds the summary the tables read
(accuracy, per class, worst class, worst 20%) and the per-image hits, from which the FRL/CAAT error triple
is computed when both natural and PGD-20 hits exist. Files are written atomically, one per attack, so a killed
evaluation resumes per checkpoint and attack. Evaluating reads the kept weights and never writes them.

What a table evaluates (attacks, n, AutoAttack subset, checkpoints) is an `Evaluation`, declared by the
experiment beside its selection rule, never part of a run's identity: adding an attack evaluates the stored
checkpoints again and never retrains.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from bench import atomic
from bench.checkpoints import MODEL, Checkpoint
from bench.config import RunConfig
from bench.data import DATASETS, load_dataset
from bench.evaluate import (EVAL_ATTACKS, TRIPLE_ATTACKS, AttackSpec, attack_hits, attack_summary,
                            triple_summary)
from bench.selection import Last, Rule, series_of
from bench.store import RunDir
from bench.training.assemble import Runtime, attack_budget, evaluation_step, load_model

CHECKPOINT_KINDS = ("best", "last")  # a checkpoint name: best[_<series>], last[_<series>] or <series>@e<epoch>


@dataclass(frozen=True)
class Evaluation:
    """The evaluation a table declares for a run: `attacks` on the first `n` test images (None: all), AutoAttack
    on the first `aa_n` (None: n), at each of `checkpoints` and their averaged-series twins (best → best_ema,
    ...). `eps`/`norm` replace the run's threat model (None: the run's)."""

    attacks: tuple[str, ...] = ("clean", "pgd20", "aa")
    n: int | None = None
    aa_n: int | None = None
    checkpoints: tuple[str, ...] = CHECKPOINT_KINDS
    eps: float | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ValueError("an evaluation needs at least one attack; allowed: a non-empty list of attack names (see `python -m bench list attacks`)")
        for name in self.attacks:
            EVAL_ATTACKS.get(name)
        for field in ("n", "aa_n"):
            value = getattr(self, field)
            if value is not None and value < 1:
                raise ValueError(f"evaluation {field}={value} must be ≥ 1, or None for the whole test set")
        if self.eps is not None and not (0 < self.eps < float("inf")):
            raise ValueError(f"evaluation eps={self.eps} must be a finite budget > 0 (pixel units)")
        if self.eps is not None and self.norm == "linf" and self.eps >= 1:
            raise ValueError(f"evaluation eps={self.eps} must be < 1 in the L∞ ball (pixel units in [0, 1])")
        if self.norm not in (None, "linf", "l2"):
            raise ValueError(f"evaluation norm={self.norm!r}; choose linf or l2")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Evaluation":
        return cls(**{**data, "attacks": tuple(data["attacks"]), "checkpoints": tuple(data["checkpoints"])})


def attack_spec(cfg: RunConfig, evaluation: Evaluation, name: str) -> AttackSpec:
    """The spec of attack `name` under `evaluation` for a run of `cfg` (its budget, step and dataset)."""
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    step = evaluation_step(cfg, step)
    if evaluation.eps is not None:  # a custom budget keeps the run's step-to-budget ratio
        eps, step = evaluation.eps, step * evaluation.eps / eps
    norm = evaluation.norm or cfg.norm
    spec = EVAL_ATTACKS.get(name)(eps, step, info.name, norm)
    n = (evaluation.aa_n or evaluation.n) if spec.kind == "aa" else evaluation.n
    return dataclasses.replace(spec, n=n)


@dataclass(frozen=True)
class EvalKey:
    checkpoint: Checkpoint
    spec: AttackSpec
    seed: int

    def digest(self) -> str:
        text = json.dumps({"spec": dataclasses.asdict(self.spec), "seed": self.seed}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def path(self, run: RunDir):
        folder = f"{self.checkpoint.series or MODEL}-e{self.checkpoint.epoch:04d}"
        return run.evals_dir / folder / f"{self.spec.name}-{self.digest()}.json"


def read(run: RunDir, key: EvalKey) -> dict[str, Any] | None:
    path = key.path(run)
    return json.loads(path.read_text()) if path.is_file() else None


def _pack(hits: np.ndarray) -> str:
    return np.packbits(hits.astype(np.uint8)).tobytes().hex()


def hits_of(artifact: dict[str, Any]) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(artifact["hits"]), dtype=np.uint8))
    return bits[: artifact["result"]["n"]].astype(bool)


def labels_of(artifact: dict[str, Any]) -> np.ndarray:
    """The labels of the evaluated images, stored with the hits so tables need no dataset."""
    return np.frombuffer(bytes.fromhex(artifact["labels"]), dtype=np.uint8).astype(np.int64)


def compute(run: RunDir, cfg: RunConfig, keys: list[EvalKey], rt: Runtime, batch_size: int = 500) -> None:
    """Evaluate every key whose artifact is missing: each checkpoint's weights loaded once, in eval mode."""
    todo = [k for k in dict.fromkeys(keys) if not k.path(run).is_file()]
    if not todo:
        return
    info = DATASETS.get(cfg.dataset)
    _, test = load_dataset(cfg.dataset, rt.data_root)
    labels = test.y.cpu().numpy()
    for ckpt in sorted({k.checkpoint for k in todo}):
        model = load_model(cfg, run, ckpt, rt)
        for key in (k for k in todo if k.checkpoint == ckpt):
            if key.spec.kind == "aa" and info.num_classes < 4:
                raise ValueError(f"standard AutoAttack's DLR losses need at least 4 classes; {cfg.dataset} has "
                                 f"{info.num_classes}")
            began = time.time()
            n = len(test) if key.spec.n is None else min(key.spec.n, len(test))
            print(f"{run.path.name}: evaluating {key.spec.name} on {n} test images at {ckpt.series}@e{ckpt.epoch}",
                  flush=True)  # AA on a full test set takes a while; a SLURM log shows what is running
            hits = attack_hits(model, test.x, test.y, key.spec, batch_size=batch_size, seed=key.seed, device=rt.device)
            print(f"{run.path.name}: {key.spec.name} at {ckpt.series}@e{ckpt.epoch}: {100 * float(np.mean(hits)):.2f}% "
                  f"in {time.time() - began:.1f} s", flush=True)
            atomic.write_json(key.path(run), {
                "checkpoint": {"series": ckpt.series, "epoch": ckpt.epoch}, "seed": key.seed,
                "num_classes": info.num_classes, "num_test": len(test),
                "result": attack_summary(key.spec, hits, labels, info.num_classes), "hits": _pack(hits),
                "labels": labels[: len(hits)].astype(np.uint8).tobytes().hex(),
                "seconds": round(time.time() - began, 3),
            })


def checkpoint_names(evaluation: Evaluation, records: list[dict[str, Any]]) -> list[str]:
    """The declared checkpoint names and their averaged-series twins (best → best_ema, ...)."""
    averaged = [s for s in series_of(records) if s]
    return [*evaluation.checkpoints, *(f"{name}_{s}" for name in evaluation.checkpoints
                                       if name in CHECKPOINT_KINDS for s in averaged)]


class EvaluatedRun:
    """A finished run seen through a table's evaluation and selection rule: which checkpoint each name is,
    and the stored evaluations of it. Reads artifacts only; `EvaluationJob` computes the missing ones."""

    def __init__(self, run: RunDir, evaluation: Evaluation, rule: Rule):
        self.run, self.evaluation, self.rule = run, evaluation, rule
        self.cfg = run.config()
        self._records = run.records()

    @property
    def path(self):
        return self.run.path

    def records(self) -> list[dict[str, Any]]:
        return self._records

    def status(self) -> str:
        return self.run.status()

    @property
    def num_classes(self) -> int:
        return DATASETS.get(self.cfg.dataset).num_classes

    def key(self, ckpt: Checkpoint, attack: str) -> EvalKey:
        return EvalKey(ckpt, attack_spec(self.cfg, self.evaluation, attack), self.cfg.seed)

    def rerank(self, series: str) -> Callable[[int], dict[str, Any] | None]:
        """The stored rerank evaluation (CFA: AutoAttack) of an epoch of `series`, or None if missing."""
        def of(epoch: int) -> dict[str, Any] | None:
            found = read(self.run, self.key(Checkpoint(series, epoch), self.rule.rerank_attack))
            return None if found is None else found["result"]
        return of

    def rerank_keys(self, series: str) -> list[EvalKey]:
        if not self.rule.needs_rerank:
            return []
        return [self.key(Checkpoint(series, e), self.rule.rerank_attack)
                for e in sorted(self.rule.candidates(self._records, self.cfg.epochs, series))]

    def resolve(self, name: str) -> Checkpoint | None:
        """The checkpoint a name stands for; None while the rule still lacks evaluations (CFA)."""
        if "@" in name:
            return Checkpoint.parse(name)
        kind, _, series = name.partition("_")
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint {name!r}: use best, last, best_<series>, last_<series> (series: "
                             f"{', '.join(s for s in series_of(self._records) if s) or 'none'}) or "
                             "<series>@e<epoch>, e.g. model@e11")
        rule = Last() if kind == "last" else self.rule
        epoch = rule.choose(self._records, self.cfg.epochs, series, self.rerank(series) if rule.needs_rerank else None)
        return None if epoch is None else Checkpoint(series, epoch)

    def checkpoint(self, name: str) -> dict[str, Any] | None:
        """{"epoch", "series", "attacks": {attack: summary}, "error_triple"?} from stored evaluations; None if
        the checkpoint cannot be resolved or none of its attacks is evaluated."""
        ckpt = self.resolve(name)
        if ckpt is None:
            return None
        found = {a: read(self.run, self.key(ckpt, a)) for a in self.evaluation.attacks}
        found = {a: art for a, art in found.items() if art is not None}
        if not found:
            return None
        out: dict[str, Any] = {"epoch": ckpt.epoch, "series": ckpt.series,
                               "attacks": {a: art["result"] for a, art in found.items()}}
        if all(a in found for a in TRIPLE_ATTACKS):
            clean, adv = (found[a] for a in TRIPLE_ATTACKS)
            labels = max((clean, adv), key=lambda art: art["result"]["n"])
            out["error_triple"] = triple_summary(hits_of(clean), hits_of(adv), labels_of(labels), self.num_classes)
        return out

    def missing(self) -> list[EvalKey]:
        """The evaluations still to compute: the rerank evaluations of a rule's candidates first (the choice
        depends on them), then every declared attack at every declared checkpoint that resolves."""
        todo: list[EvalKey] = []
        for name in checkpoint_names(self.evaluation, self._records):
            kind, _, series = name.partition("_")
            if kind == "best":
                todo += [k for k in self.rerank_keys(series) if not k.path(self.run).is_file()]
            ckpt = self.resolve(name)
            if ckpt is not None:
                todo += [k for k in (self.key(ckpt, a) for a in self.evaluation.attacks) if not k.path(self.run).is_file()]
        return list(dict.fromkeys(todo))

    def selection(self, name: str) -> dict[str, Any]:
        ckpt = self.resolve(name)
        rule = Last() if name.startswith("last") else self.rule
        return {"rule": rule.spec(), "describe": rule.describe(),
                "checkpoint": None if ckpt is None else ckpt.label}

    def summary(self) -> dict[str, Any]:
        """A run's evaluated checkpoints for display (`bench train`, the executors)."""
        names = checkpoint_names(self.evaluation, self._records)
        return {"run_id": self.run.path.name, "method": self.cfg.method, "dataset": self.cfg.dataset,
                "model": self.cfg.model, "epochs": self.cfg.epochs, "seed": self.cfg.seed,
                "attacks": list(self.evaluation.attacks), "rule": self.rule.describe(),
                "checkpoints": {name: self.checkpoint(name) for name in names}}


def stored(run: RunDir) -> list[dict[str, Any]]:
    """Every evaluation artifact of a run, in path order."""
    return [json.loads(p.read_text()) for p in sorted(run.evals_dir.glob("*/*.json"))] if run.evals_dir.is_dir() else []


def run_evaluation(run: RunDir, evaluation: Evaluation, rule: Rule, rt: Runtime) -> dict[str, Any]:
    """Compute every missing evaluation of a finished run (rounds: a rule's candidates first), then summarise."""
    for _ in range(3):  # rerank evaluations, then the chosen checkpoints'
        view = EvaluatedRun(run, evaluation, rule)
        todo = view.missing()
        if not todo:
            return view.summary()
        compute(run, view.cfg, todo, rt)
    return EvaluatedRun(run, evaluation, rule).summary()

