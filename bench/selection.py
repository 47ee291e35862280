"""Model selection as data: rules that pick a checkpoint from a run's per-epoch records, after training.

Training records, every `eval_every` epochs, the evaluation attacks (`eval_attacks`) on each monitored set
(`monitor_on`: "test" = the first `eval_n` test images, or a held-out split of the scenario such as BiLAW's
"val_stop" or CFA's "val"), for the trained model (series "") and each averaged model (EMA, FAWA: series
"ema", "fawa"). A rule's `choose` is a pure function of those records (CFA's rule also of AutoAttack
evaluations of its candidates), so a table can select with any rule whose data was recorded, and the same
records always give the same checkpoint. Training keeps only the checkpoints some rule could pick: the union of
`candidates` over every variant a registered rule offers for the run (`retention_rules`).

Rules are written `name` or `name:key=value,...` (`parse_rule`), e.g. `last`, `best:attack=pgd20,on=val_stop`,
`cfa`. Ties keep the earlier epoch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Literal

from bench.hparams import build, parse_pairs
from bench.registry import Registry

Record = dict[str, Any]
Score = Literal["acc", "acc+worst", "acc+worst20"]
AFTER_FRACTIONS = (0.0, 0.5)  # the after-fractions training keeps candidates for (any epoch; CFA's second half)
SCORES: tuple[Score, ...] = ("acc", "acc+worst", "acc+worst20")


def monitored(record: Record, on: str, series: str = "") -> dict[str, Any] | None:
    """The evaluation recorded at this epoch on set `on` for `series` ("" = the trained model), or None.

    Layout: the test set's under "eval" (trained model) and "eval_averaged"[series]; any other set's under
    "monitor"[on][series]."""
    if on == "test":
        return record.get("eval") if not series else record.get("eval_averaged", {}).get(series)
    return record.get("monitor", {}).get(on, {}).get(series)


def series_of(records: Iterable[Record]) -> list[str]:
    """Every model series the records evaluate: "" (the trained model) and the averaged ones."""
    found = {""}
    for r in records:
        found.update(r.get("eval_averaged", {}))
        for by_series in r.get("monitor", {}).values():
            found.update(by_series)
    return sorted(found)


def score(attack: dict[str, Any], how: Score) -> float:
    """Accuracy, plus the worst class's (CFA §5.1) or the worst 20% of classes' (CFA Table 4) accuracy."""
    extra = {"acc": 0.0, "acc+worst": attack.get("worst_class_acc"), "acc+worst20": attack.get("worst20_mean")}[how]
    return attack["acc"] + (extra or 0.0)


class Rule:
    """A selection rule; subclasses are frozen dataclasses registered in RULES."""

    name: ClassVar[str]
    needs_rerank: ClassVar[bool] = False  # True: choose() needs evaluations of the candidates (rerank_attack)

    def choose(self, records: list[Record], epochs: int, series: str = "",
               rerank: Callable[[int], dict[str, Any] | None] | None = None) -> int | None:
        """The chosen epoch (0-based), or None when the records hold nothing to choose from."""
        raise NotImplementedError

    def candidates(self, records: list[Record], epochs: int, series: str = "") -> set[int]:
        """Epochs this rule could still choose given the records so far (training keeps their weights)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, eval_attacks: tuple[str, ...], monitor_on: tuple[str, ...]) -> None:
        """Refuse a rule whose data a run with these monitoring settings does not record."""

    @classmethod
    def variants(cls, eval_attacks: tuple[str, ...], monitor_on: tuple[str, ...]) -> list["Rule"]:
        """The instances training keeps candidates for, given what it monitors."""
        return []

    def spec(self) -> str:
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default}
        return self.name + (":" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in changed.items()) if changed else "")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.name, **dataclasses.asdict(self)}


RULES: Registry[type[Rule]] = Registry("selection rule")


def _check(rule: Any, eval_attacks: tuple[str, ...], monitor_on: tuple[str, ...]) -> None:
    if rule.attack not in eval_attacks:
        raise ValueError(f"selection {rule.spec()}: attack {rule.attack!r} is not evaluated per epoch; "
                         f"eval_attacks are {list(eval_attacks)}")
    if rule.on not in monitor_on:
        raise ValueError(f"selection {rule.spec()}: set {rule.on!r} is not monitored; monitor_on is "
                         f"{list(monitor_on)}")


@RULES.register("last")
@dataclass(frozen=True)
class Last(Rule):
    """The final epoch's weights."""

    name: ClassVar[str] = "last"

    def choose(self, records, epochs, series="", rerank=None):
        return epochs - 1 if records and records[-1]["epoch"] == epochs - 1 else None

    def candidates(self, records, epochs, series=""):
        return {records[-1]["epoch"]} if records else set()

    def describe(self) -> str:
        return "the last epoch"

    @classmethod
    def variants(cls, eval_attacks, monitor_on):
        return [cls()]


@RULES.register("best")
@dataclass(frozen=True)
class Best(Rule):
    """Early stopping (Rice et al. 2020): the epoch with the highest score under `attack` on set `on`, among
    the epochs after `after`·epochs."""

    attack: str = "pgd20"
    on: str = "test"
    score: Score = "acc"
    after: float = 0.0
    name: ClassVar[str] = "best"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"selection best: score={self.score!r}; allowed: {list(SCORES)}")
        if self.after not in AFTER_FRACTIONS:
            raise ValueError(f"selection best: after={self.after:g}; allowed: {list(AFTER_FRACTIONS)} (training "
                             "keeps the candidates of these fractions only)")

    def _scored(self, records: list[Record], epochs: int, series: str) -> list[tuple[float, int]]:
        out = []
        for r in records:
            ev = monitored(r, self.on, series)
            if ev is not None and r["epoch"] + 1 >= self.after * epochs and self.attack in ev["attacks"]:
                out.append((score(ev["attacks"][self.attack], self.score), r["epoch"]))
        return out

    def choose(self, records, epochs, series="", rerank=None):
        scored = self._scored(records, epochs, series)
        return max(scored, key=lambda se: (se[0], -se[1]))[1] if scored else None

    def candidates(self, records, epochs, series=""):
        chosen = self.choose(records, epochs, series)
        return set() if chosen is None else {chosen}

    def describe(self) -> str:
        what = {"acc": "accuracy", "acc+worst": "accuracy + worst-class accuracy",
                "acc+worst20": "accuracy + worst-20%-classes accuracy"}[self.score]
        where = "the monitored test images" if self.on == "test" else f"the held-out split '{self.on}'"
        after = f" among epochs ≥ {self.after:g}·total" if self.after else ""
        return f"highest {self.attack} {what} on {where}{after}; ties keep the earlier epoch"

    def check(self, eval_attacks, monitor_on):
        _check(self, eval_attacks, monitor_on)

    @classmethod
    def variants(cls, eval_attacks, monitor_on):
        return [cls(a, on, s, after) for a in eval_attacks for on in monitor_on for s in SCORES
                for after in AFTER_FRACTIONS]


@RULES.register("cfa")
@dataclass(frozen=True)
class CFASelect(Rule):
    """CFA's rule (CFA §5.1 and its official train.py): in the second half of training, an epoch is a candidate
    when its PGD-10 accuracy + worst-class accuracy is at least the best so far minus `margin` (0.02 in the
    code), and so is each of the last `last` epochs (5 in the code); the candidate with the highest AutoAttack
    accuracy + worst-class accuracy is chosen (the paper reports AA at the selected checkpoint)."""

    attack: str = "pgd10"
    on: str = "test"
    score: Score = "acc+worst"
    margin: float = 0.02
    last: int = 5
    after: float = 0.5
    rerank_attack: str = "aa"
    name: ClassVar[str] = "cfa"
    needs_rerank: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"selection cfa: score={self.score!r}; allowed: {list(SCORES)}")
        if not self.margin >= 0 or self.last < 0 or not 0 <= self.after < 1:
            raise ValueError(f"selection cfa: margin={self.margin:g} (≥ 0), last={self.last} (≥ 0), "
                             f"after={self.after:g} (in [0, 1)) out of range")

    def candidates(self, records, epochs, series=""):
        best, out = 0.0, set()  # the code's running threshold starts at 0
        for r in records:
            e = r["epoch"]
            ev = monitored(r, self.on, series) if e >= self.after * epochs else None
            s = score(ev["attacks"][self.attack], self.score) if ev and self.attack in ev["attacks"] else None
            if s is not None and s >= best - self.margin:
                out.add(e)
                best = max(best, s)
            if e >= epochs - self.last:  # the last epochs, also when a short schedule puts them in the first half
                out.add(e)
        return out

    def choose(self, records, epochs, series="", rerank=None):
        if rerank is None:
            raise ValueError(f"selection {self.spec()} ranks its candidates by {self.rerank_attack}: give their "
                             "evaluations")
        scored = []
        for e in sorted(self.candidates(records, epochs, series)):
            ev = rerank(e)
            if ev is None:
                return None
            scored.append((score(ev, self.score), e))
        return max(scored, key=lambda se: (se[0], -se[1]))[1] if scored else None

    def describe(self) -> str:
        where = "test images" if self.on == "test" else f"held-out split '{self.on}'"
        return (f"CFA's rule: candidates = epochs ≥ {self.after:g}·total whose {self.attack} {self.score} on the "
                f"monitored {where} is within {self.margin:g} of the best so far, plus the last {self.last}; "
                f"the one with the highest {self.rerank_attack} {self.score} is chosen")

    def check(self, eval_attacks, monitor_on):
        _check(self, eval_attacks, monitor_on)

    @classmethod
    def variants(cls, eval_attacks, monitor_on):
        return [cls(a, on, s) for a in eval_attacks if a != "clean" for on in monitor_on
                for s in ("acc+worst", "acc+worst20")]


def parse_rule(text: str) -> Rule:
    """`best:attack=pgd20,on=val_stop` → Best(attack="pgd20", on="val_stop"); `last`; `cfa`."""
    name, _, args = text.partition(":")
    cls = RULES.get(name.strip())
    return build(cls, parse_pairs([a for a in args.split(",") if a.strip()]))


def rule_from_dict(data: dict[str, Any]) -> Rule:
    values = dict(data)
    return build(RULES.get(values.pop("rule")), values)


def retention_rules(eval_attacks: tuple[str, ...], monitor_on: tuple[str, ...]) -> list[Rule]:
    """Every rule variant training keeps candidates for: whatever rule a table declares later, if it is one of
    these, its checkpoint is stored."""
    return [rule for name in RULES for rule in RULES.get(name).variants(eval_attacks, monitor_on)]


def kept_epochs(records: list[Record], epochs: int, series: str, rules: Iterable[Rule]) -> set[int]:
    """The epochs of `series` whose weights training keeps after these records."""
    return set().union(*(rule.candidates(records, epochs, series) for rule in rules))
