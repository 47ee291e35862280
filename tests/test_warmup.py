"""A method's warm-up (Method.warmup): the epochs in which it trains as something else, and the tables' flag on a
checkpoint selected inside them (GAIRAT's best epoch on F-MNIST at the paper budget was such a checkpoint)."""
import math

import pandas as pd
import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.eval_store import Evaluation
from bench.experiments import PlannedRun
from bench.experiments.base import Cell, Experiment
from bench.experiments.check import check_table
from bench.experiments.render import WARMUP_MARK, collect, to_markdown
from bench.papers import lookup
from bench.selection import Last
from bench.store import RunStore
from bench.train import train_run
from methods import MethodContext, build_method
from methods.core.reference_epoch import first_epoch
from methods.core.registry import warmup_of

TINY_CNN_LINF = "Tiny-CNN / perturbation: ℓ∞ / ε = 0.1 / "


def _ctx(epochs):
    return MethodContext(num_classes=4, eps=0.1, step_size=0.025, attack_steps=4, epochs=epochs, steps_per_epoch=1,
                         class_counts=(8,) * 4, heldout={}, device=torch.device("cpu"), fidelity="paper",
                         new_model=lambda: nn.Linear(4, 4), image_shape=(1, 2, 2))


@pytest.mark.parametrize("name, epochs, until", [("gairat", 100, 49), ("gairat", 120, 59), ("mail_at", 100, 63),
                                                 ("mail_at", 120, 76), ("mail_trades", 120, 76)])
def test_the_warmup_ends_where_the_method_starts_weighting(name, epochs, until):
    """BiLAW's 100 epochs: GAIRAT weights from 1-based epoch 50, MAIL from 64; the official 120: 60 and 77."""
    assert warmup_of(name, {}, epochs).until == until
    assert first_epoch(build_method(name, {}, _ctx(epochs)).weighted, epochs) == until


def test_methods_without_a_warmup_and_compositions_declare_none():
    assert warmup_of("pgd_at", {}, 100) is None and warmup_of("bilaw", {}, 100) is None
    assert warmup_of("mail_at+ema", {}, 100) is None  # the add-on changes the update on its own schedule
    assert warmup_of("gairat", {"begin": 0.25}, 100).until == 24


def _tiny(method, epochs, **hp):
    return RunConfig(method=method, train_limit=128, epochs=epochs, attack_steps=2, eval_attacks=("clean",),
                     eval_n=32, hp=tuple(sorted(hp.items())))


def test_gairat_trains_as_pgd_at_until_its_begin_epoch(tmp_path):
    """Same seed, same draws: GAIRAT's loss is PGD-AT's in its warm-up epoch (up to float summation order: GAIRAT
    averages weighted per-sample losses) and departs from it once it weights."""
    store, losses = RunStore(tmp_path), {}
    for method in ("pgd_at", "gairat"):
        cfg = _tiny(method, 4)  # begin = 0.5 of 4 epochs: weights from 0-based epoch 1
        train_run(cfg, store.run_dir(cfg))
        losses[method] = [r["train_loss"] for r in store.run_dir(cfg).records()]
    assert warmup_of("gairat", {}, 4).until == 1
    assert losses["gairat"][0] == pytest.approx(losses["pgd_at"][0], rel=1e-6)
    assert abs(losses["gairat"][1] - losses["pgd_at"][1]) > 1e-3


def test_a_cell_read_inside_the_warmup_is_marked_with_its_epoch_and_what_it_trained_as(tmp_path):
    """MAIL with its burn-in over the whole run: the last checkpoint is an unweighted model, and the table says so;
    the AT row beside it, which has no warm-up, is not marked."""
    plan = [PlannedRun("mail", _tiny("mail_at", 1, burn_in=1.0)), PlannedRun("at", _tiny("pgd_at", 1))]
    evaluation = Evaluation(("clean",), n=64)
    experiment = Experiment("t", "bilaw", "table1", "t", lambda profile: plan,
                            lambda: [Cell("F-MNIST / MAIL", TINY_CNN_LINF + "Clean", "mail", "last", "clean"),
                                     Cell("F-MNIST / AT", TINY_CNN_LINF + "Clean", "at", "last", "clean")],
                            evaluation=lambda profile, run: evaluation, selection=lambda run: Last())
    store = RunStore(tmp_path)
    for run in plan:
        train_run(run.config, store.run_dir(run.config), evaluation=evaluation, selection=Last())
    cells = collect(experiment, store, "smoke")
    assert list(cells["in_warmup"]) == [True, False]
    assert list(cells["checkpoints"]) == ["last:model@e0", "last:model@e0"]
    text = to_markdown(experiment, cells, "smoke")
    mail_row = next(line for line in text.splitlines() if line.startswith("| F-MNIST / MAIL |"))
    at_row = next(line for line in text.splitlines() if line.startswith("| F-MNIST / AT |"))
    assert mail_row.rstrip(" |").endswith(WARMUP_MARK) and WARMUP_MARK not in at_row
    mail_id = plan[0].config.run_id()
    assert (f"- mail (`{mail_id}`): epoch 1 of 1 (model@e0; the last epoch) {WARMUP_MARK} before the method's own "
            "update, which never starts in 1 epochs: this checkpoint trained as PGD-AT with MAIL's attack") in text


def test_a_claim_on_a_warmup_cell_says_so_beside_its_comparison():
    experiment = lookup("table1_bilaw")
    rows = [("F-MNIST / GAIRAT", 74.9, True), ("F-MNIST / AT", 74.9, False)]
    cells = pd.DataFrame.from_records([
        {"row": row, "column": TINY_CNN_LINF + "AA", "unit": "acc%", "ours": ours, "ours_se": 0.4, "published": 0.0,
         "status": "done", "in_warmup": warm} for row, ours, warm in rows])
    [claim] = [c for c in check_table(experiment, cells, "paper").claims if c.claim.id == "bilaw-t1-gairat-aa-fmnist"]
    assert claim.warmup_rows == ("F-MNIST / GAIRAT",)
    assert claim.deciding().endswith("(§ F-MNIST / GAIRAT: read inside the method's warm-up, before its own update; "
                                     "see 'Checkpoints read')")
    assert not math.isnan(claim.judgement.worst().d)
