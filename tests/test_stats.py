"""The uncertainty a cell carries (binomial from its n, over seeds, of a difference) and the 2-se judgement."""
import json
from dataclasses import dataclass
import math

import pytest
import torch

from bench.experiments.base import Cell
from bench.experiments.stats import (NOT_DISTINGUISHABLE, STATS, Accepted, Measured, binomial_se, difference, judge,
                                     se_in_unit, seeds_se)



def test_binomial_se_is_the_agresti_coull_standard_error():
    assert binomial_se(0.5, 96) == pytest.approx(math.sqrt(0.5 * 0.5 / 100))  # (48 + 2) / (96 + 4) = 0.5
    # AA on 300 images at 66.67%: about 2.7 points, the noise the issue measured across thread counts
    assert 100 * binomial_se(2 / 3, 300) == pytest.approx(2.7, abs=0.05)
    assert binomial_se(0.0, 10) > 0 and binomial_se(1.0, 10) > 0  # never exact on a few images
    assert binomial_se(0.9, 10_000) < binomial_se(0.9, 100)
    with pytest.raises(ValueError, match="n=0"):
        binomial_se(0.5, 0)


def test_seeds_se_adds_the_seed_spread_to_the_shared_test_set_error():
    assert seeds_se([80.0], [1.0]) == 1.0  # one seed: the test-set sampling error alone
    values = [80.0, 82.0, 84.0]  # stdev 2, over 3 seeds
    assert seeds_se(values, [1.0, 1.0, 1.0]) == pytest.approx(math.sqrt(4 / 3 + 1))
    assert seeds_se(values, [math.nan] * 3) == pytest.approx(math.sqrt(4 / 3))  # timing: spread only
    assert math.isnan(seeds_se([], []))


def test_difference_in_points_and_relative():
    d, se = difference(50.0, 40.0, 3.0, 4.0)
    assert (d, se) == (10.0, 5.0)
    d, se = difference(1.96, 4.02, 0.0, 0.0, "relative")  # UIAT Table 2: one-off vs HAT, ResNet-18
    assert d == pytest.approx(-51.24, abs=0.01) and se == 0.0
    _, se = difference(2.0, 4.0, 0.1, 0.2, "relative")
    assert se == pytest.approx(100 * math.hypot(0.1 / 4, 2 * 0.2 / 16))
    with pytest.raises(ValueError, match="non-zero reference"):
        difference(1.0, 0.0, 0.0, 0.0, "relative")
    with pytest.raises(ValueError, match="'ratio' unknown"):
        difference(1.0, 2.0, 0.0, 0.0, "ratio")


def test_judge_needs_the_whole_2se_interval_on_one_side():
    above = Accepted(low=0.0)  # "lhs > rhs"
    assert judge(3.0, 1.0, above) == "held"  # 3 − 2 > 0
    assert judge(1.5, 1.0, above) == NOT_DISTINGUISHABLE
    assert judge(-1.5, 1.0, above) == NOT_DISTINGUISHABLE
    assert judge(-3.0, 1.0, above) == "refuted"
    assert judge(0.0, 0.0, above) == "refuted"  # a published tie: not strictly above
    assert judge(0.0, math.nan, Accepted(low=0.0, closed=True)) == "held"  # unknown se: d itself
    about = Accepted(-22.0, -20.0, closed=True)  # "by 21 points", ±1
    assert judge(-21.0, 0.4, about) == "held"
    assert judge(-21.0, 0.6, about) == NOT_DISTINGUISHABLE  # −22.2 … −19.8 straddles both ends
    assert judge(-25.0, 1.0, about) == "refuted"


def test_se_is_converted_to_the_published_unit():
    m = Measured(0.8, "acc", 0.01)
    assert se_in_unit(m, "acc%") == pytest.approx(1.0) and se_in_unit(m, "err%") == pytest.approx(1.0)
    assert se_in_unit(Measured(120.0, "seconds", 6.0), "other:min/epoch") == pytest.approx(0.1)


@dataclass
class _Evaluated:
    """What a statistic reads of a run (bench.eval_store.EvaluatedRun's reading side): stored evaluations by
    checkpoint name, the class count and the epoch records."""
    checkpoints: dict
    num_classes: int

    def checkpoint(self, name: str) -> dict | None:
        return self.checkpoints.get(name)

    def records(self) -> list:
        return []


def _run(tmp_path, attacks: dict, triple: dict | None = None, num_classes: int = 10) -> _Evaluated:
    checkpoint = {"attacks": attacks, **({"error_triple": triple} if triple else {})}
    return _Evaluated({"best": checkpoint}, num_classes)


def test_cell_statistics_carry_the_binomial_se_of_their_images(tmp_path):
    run = _run(tmp_path, {"clean": {"n": 1000, "acc": 0.8, "worst_class_acc": 0.6, "worst20_mean": 0.65},
                          "aa": {"n": 300, "acc": 0.5}},
               triple={"n": 1000, "rob": {"avg": 0.5, "worst": 0.7}}, num_classes=10)
    cell = Cell("r", "c", "run", "best", "clean")
    assert STATS.get("acc")(run, cell).se == pytest.approx(binomial_se(0.8, 1000))
    assert STATS.get("worst")(run, cell).se == pytest.approx(binomial_se(0.6, 100))  # one class: 1000 / 10
    assert STATS.get("worst20")(run, cell).se == pytest.approx(binomial_se(0.65, 200))  # 2 of 10 classes
    assert STATS.get("rob_worst")(run, cell).se == pytest.approx(binomial_se(0.7, 100))
    assert STATS.get("rob_avg")(run, cell).se == pytest.approx(binomial_se(0.5, 1000))
    gap = STATS.get("gap")(run, Cell("r", "c", "run", "best", "aa"))
    assert gap.value == pytest.approx(0.3) and gap.se == pytest.approx(binomial_se(0.3, 300))


def test_a_run_records_its_threads_and_device_and_its_cells_their_se(tmp_path):
    from bench.config import RunConfig
    from bench.eval_store import Evaluation
    from bench.experiments.base import Experiment, PlannedRun
    from bench.selection import Best
    from bench.experiments.render import collect
    from bench.store import RunStore
    from bench.train import train_run

    column = "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / Clean"
    config = RunConfig(method="natural", train_limit=64, epochs=1, attack_steps=1, eval_attacks=("clean",), eval_n=32)
    evaluation, rule = Evaluation(("clean",), n=64), Best(attack="clean")
    experiment = Experiment("t", "bilaw", "table1", "t", lambda profile: [PlannedRun("plain", config)],
                            lambda: [Cell("F-MNIST / plain", column, "plain", attack="clean")],
                            evaluation=lambda profile, run: evaluation, selection=lambda run: rule)
    store = RunStore(tmp_path)
    result = train_run(config, store.run_dir(config), evaluation=evaluation, selection=rule)
    run = store.run_dir(config)
    machine = json.loads(run.config_file.read_text())["machine"]
    assert machine["threads"] == torch.get_num_threads() and machine["device"] == "cpu"
    assert machine["torch"] == torch.__version__
    assert all(record["threads"] == torch.get_num_threads() for record in run.records())
    acc = result["checkpoints"]["best"]["attacks"]["clean"]["acc"]
    assert collect(experiment, store, "smoke").iloc[0]["ours_se"] == pytest.approx(100 * binomial_se(acc, 64))
