"""Metrics against hand-computed values on constructed predictions."""
import json
import math

import numpy as np
import pytest
import torch

from bench import metrics


def test_per_class_and_overall_accuracy_from_logits_and_indices():
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 0])
    logits = torch.nn.functional.one_hot(pred, 4).float() * 3.0 - 1.0
    for p in (pred, logits, pred.numpy(), [0, 1, 1, 1, 0, 0]):
        per_class = metrics.per_class_accuracy(p, y, num_classes=4)
        assert per_class[:3] == pytest.approx([1 / 2, 2 / 3, 0.0])
        assert math.isnan(per_class[3])  # class 3 has no sample: undefined, not 0
        assert metrics.accuracy(p, y) == pytest.approx(3 / 6)  # over samples, not the class mean
    assert all(type(v) is float for v in per_class)


def test_worst_class_skips_absent_classes_and_breaks_ties_low():
    assert metrics.worst_class([0.5, float("nan"), 0.2, 0.2]) == (2, 0.2)
    with pytest.raises(ValueError):
        metrics.worst_class([float("nan")] * 3)


def test_worst_20_percent_on_ten_classes():
    acc = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 1.0]
    assert metrics.worst_fraction_mean(acc, 0.2) == pytest.approx((0.1 + 0.2) / 2)
    assert metrics.worst_fraction_mean(acc, 0.3) == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    # absent classes leave the ranking and the count: 8 present → ceil(1.6) = 2 worst
    assert metrics.worst_fraction_mean(acc[:8] + [float("nan")] * 2, 0.2) == pytest.approx(0.15)


@pytest.mark.parametrize("classes, fraction, k", [(200, 0.2, 40), (10, 0.2, 2), (100, 0.2, 20),
                                                  (12, 0.2, 3), (30, 0.1, 3), (3, 0.2, 1)])
def test_worst_k_count_is_ceil(classes, fraction, k):
    assert metrics.worst_k_count(classes, fraction) == k


def _triple_case():
    # three classes, four samples each, plus a fourth class with no sample.
    y = np.repeat([0, 1, 2], 4)
    clean = np.array([1, 0, 0, 0,  1, 1, 1, 1,  1, 1, 0, 0], bool)
    adv = np.array([0, 0, 0, 0,  1, 0, 0, 0,  0, 0, 1, 1], bool)  # class 2: adv-right where clean-wrong
    return clean, adv, y


def test_error_triple_by_hand():
    clean, adv, y = _triple_case()
    t = metrics.error_triple(clean, adv, y, num_classes=4)
    # acc = (.25, 1, .5), advacc = (0, .25, .5)
    assert t["nat"]["per_class"][:3] == pytest.approx([0.75, 0.0, 0.5])
    assert t["bdy"]["per_class"][:3] == pytest.approx([0.25, 0.75, 0.0])  # difference of accuracies
    assert t["rob"]["per_class"][:3] == pytest.approx([1.0, 0.75, 0.5])
    assert all(math.isnan(t[k]["per_class"][3]) for k in ("nat", "bdy", "rob"))
    assert (t["nat"]["avg"], t["bdy"]["avg"], t["rob"]["avg"]) == pytest.approx((5 / 12, 4 / 12, 9 / 12))
    assert (t["nat"]["worst"], t["nat"]["worst_class"]) == (0.75, 0)
    assert (t["bdy"]["worst"], t["bdy"]["worst_class"]) == (0.75, 1)
    assert (t["rob"]["worst"], t["rob"]["worst_class"]) == (1.0, 0)
    # worst per quantity separately: worst rob is not worst nat + worst bdy
    assert t["rob"]["worst"] != pytest.approx(t["nat"]["worst"] + t["bdy"]["worst"])
    for c in range(3):
        assert t["nat"]["per_class"][c] + t["bdy"]["per_class"][c] == t["rob"]["per_class"][c]
    assert t["nat"]["avg"] + t["bdy"]["avg"] == pytest.approx(t["rob"]["avg"])


def test_error_triple_rejects_mismatched_inputs():
    clean, adv, y = _triple_case()
    with pytest.raises(ValueError, match="same samples"):
        metrics.error_triple(clean, adv[:-1], y, 3)
    with pytest.raises(ValueError, match="labels must lie"):
        metrics.error_triple(clean, adv, y, 2)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="shape"):
        metrics.per_class_accuracy(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="shape"):
        metrics.accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="fraction"):
        metrics.worst_fraction_mean([0.5, 0.6], 0.0)


def test_display_and_json_conversions():
    data = {"acc": 0.25, "per_class": [0.5, float("nan")], "worst_class": 3}
    assert metrics.percent(data) == {"acc": 25.0, "per_class": [50.0, pytest.approx(float("nan"), nan_ok=True)],
                                     "worst_class": 3}
    safe = metrics.json_safe(data)
    assert json.loads(json.dumps(safe, allow_nan=False)) == {"acc": 0.25, "per_class": [0.5, None], "worst_class": 3}
