"""bench.cost's per-method step factors come from the declared step bounds (methods/core/step_bound.py)."""
from __future__ import annotations

import pytest

from bench.config import RunConfig
from bench.cost import MEASURED_OVER_BOUND, MEASURED_SOURCE, _mean_bound_units, method_factor


def test_factor_is_the_bound_ratio_to_pgd_at():
    natural = method_factor(RunConfig(method="natural", epochs=2, attack_steps=10))
    assert natural.value == pytest.approx(3 / (10 + 10 + 3))  # fwd + bwd against K fwd + K input_bwd + fwd + bwd
    assert natural.source == "step bound"
    five = method_factor(RunConfig(method="mart", epochs=2, attack_steps=5)).value
    assert five == pytest.approx((5 + 5 + 2 + 2 * 2) / (5 + 5 + 1 + 2))  # the bound follows the run's attack steps


def test_measured_ratio_scales_the_bound_and_is_named():
    paper = method_factor(RunConfig(method="caat", epochs=2))
    code = method_factor(RunConfig(method="caat", epochs=2, fidelity="code"))
    assert MEASURED_SOURCE in paper.source and MEASURED_SOURCE in code.source
    ratio = _mean_bound_units("caat", (), 10, "code", 2, "linf") / _mean_bound_units("pgd_at", (), 10, "code", 2, "linf")
    assert code.value == pytest.approx(ratio * MEASURED_OVER_BOUND["caat@code"] / MEASURED_OVER_BOUND["pgd_at"])
    assert code.value < paper.value / 1.8  # the code meta-steps every 50 batches: about half the work per step
    assert paper.value > 4  # two joint PGD runs of 2 batches each, and the look-ahead, against one PGD run
    uiat = method_factor(RunConfig(method="uiat", epochs=2))
    assert uiat.source == "step bound" and "uiat" not in MEASURED_OVER_BOUND


def test_a_method_that_cannot_be_built_counts_as_pgd_at_and_says_why():
    hat = method_factor(RunConfig(method="hat", epochs=2))
    assert hat.value == 1.0 and hat.source.startswith("no bound (no helper model given")
