"""Selection rules as data: each rule's choice is a pure function of the records, training keeps the weights of
every epoch a rule could pick, and the kept checkpoint of the chosen epoch is the model the records measured."""
import random

import pytest
import torch

from bench.checkpoints import Checkpoint, CheckpointStore
from bench.config import RunConfig
from bench.data import DATASETS, load_dataset
from bench.eval_store import EvaluatedRun, Evaluation, run_evaluation
from bench.evaluate import EvalConfig, attack_specs, evaluate
from bench.selection import (Best, CFASelect, Last, kept_epochs, monitored, parse_rule, retention_rules,
                             rule_from_dict)
from bench.store import RunStore
from bench.train import train_run
from bench.training.assemble import Runtime, attack_budget, load_model


def _record(epoch, acc, worst, on="test", series=""):
    ev = {"attacks": {"pgd10": {"acc": acc, "worst_class_acc": worst, "worst20_mean": worst}}}
    if on == "test":
        return {"epoch": epoch, **({"eval": ev} if not series else {"eval_averaged": {series: ev}})}
    return {"epoch": epoch, "monitor": {on: {series: ev}}}


def test_best_picks_the_highest_score_after_the_fraction_and_the_earlier_of_ties():
    records = [_record(e, acc, worst) for e, (acc, worst) in enumerate([(.5, .1), (.6, .1), (.4, .4), (.6, .1)])]
    assert Best("pgd10").choose(records, 4) == 1  # 0.6 twice: the earlier
    assert Best("pgd10", score="acc+worst").choose(records, 4) == 2
    assert Best("pgd10", after=0.5).choose(records, 4) == 1  # epochs 1..3 have epoch + 1 >= 2
    assert Best("pgd10", on="val_stop").choose(records, 4) is None  # nothing recorded on that set
    held = [_record(e, acc, 0.0, on="val_stop") for e, acc in enumerate([.2, .7, .3])]
    assert Best("pgd10", on="val_stop").choose(held, 3) == 1
    assert Last().choose(records, 4) == 3 and Last().choose(records[:2], 4) is None  # unfinished: no last


def test_cfa_candidates_follow_the_official_rule_and_the_rerank_decides():
    """CFA train.py: from the second half, save when score >= running best - 0.02, or in the last 5 epochs."""
    scores = [.9, .1, .50, .49, .47, .52, .40, .51, .30, .30, .30, .30]  # 12 epochs: second half = 6..11
    records = [_record(e, s, 0.0) for e, s in enumerate(scores)]
    rule = CFASelect(attack="pgd10", score="acc", last=3)
    # 6: .40 >= 0 - .02 (best .40); 7: .51 (best .51); 8: .30 < .49 no; 9 .30 no; 10, 11: last 3 → also 9
    assert rule.candidates(records, 12) == {6, 7, 9, 10, 11}
    aa = {6: .20, 7: .25, 9: .25, 10: .10, 11: .05}
    assert rule.choose(records, 12, rerank=lambda e: {"acc": aa[e], "worst_class_acc": 0.0}) == 7  # tie: earlier
    assert rule.choose(records, 12, rerank=lambda e: None) is None  # a candidate not evaluated yet
    with pytest.raises(ValueError, match="ranks its candidates by aa"):
        rule.choose(records, 12)


def test_rules_parse_from_text_and_refuse_bad_values():
    assert parse_rule("best:attack=pgd10,on=val,score=acc+worst,after=0.5") == Best("pgd10", "val", "acc+worst", 0.5)
    assert parse_rule("cfa").spec() == "cfa" and parse_rule("last") == Last()
    assert rule_from_dict(parse_rule("cfa:margin=0.05").to_dict()) == CFASelect(margin=0.05)
    with pytest.raises(ValueError, match="unknown selection rule 'bset'"):
        parse_rule("bset")
    with pytest.raises(ValueError, match=r"after=0.3; allowed: \[0.0, 0.5\]"):
        parse_rule("best:after=0.3")
    with pytest.raises(ValueError, match="score='worst'"):
        Best(score="worst")
    with pytest.raises(ValueError, match="set 'val_stop' is not monitored"):
        Best(on="val_stop").check(("clean", "pgd20"), ("test",))


@pytest.mark.parametrize("seed", range(20))
def test_training_keeps_every_epoch_a_rule_can_still_pick(seed):
    """For every rule variant training retains, the epoch it picks at the end is kept from the moment it is
    recorded to the end (so its weights are on disk whatever rule a table declares later)."""
    rng = random.Random(seed)
    epochs = 14
    records = [_record(e, rng.choice([.3, .4, .5, .6]), rng.choice([0., .1, .2])) for e in range(epochs)]
    rules = retention_rules(("clean", "pgd10"), ("test",))
    for rule in rules:
        if rule.needs_rerank:
            aa = {e: rng.random() for e in range(epochs)}
            final = rule.choose(records, epochs, rerank=lambda e: {"acc": aa[e], "worst_class_acc": 0.0})
        else:
            final = rule.choose(records, epochs)
        if final is None:
            continue
        for t in range(final, epochs):
            assert final in kept_epochs(records[: t + 1], epochs, "", rules), (rule, t)


SMALL = dict(dataset="fmnist", model="tiny-cnn", train_limit=256, batch_size=64, attack_steps=1,
             eval_attacks=("clean", "pgd20"), eval_n=48)
RULES = [Last(), Best(), Best(score="acc+worst", after=0.5), Best(attack="clean"),
         CFASelect(attack="pgd20", rerank_attack="clean", margin=0.05, last=1)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = RunConfig(method="pgd_at+ema", hp=(("ema.start_epoch", "1"),), epochs=4, **SMALL)
    run = RunStore(tmp_path_factory.mktemp("sel")).run_dir(cfg)
    train_run(cfg, run, evaluation=None)
    return cfg, run


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.spec())
@pytest.mark.parametrize("series", ["", "ema"])
def test_the_chosen_checkpoint_is_kept_and_is_the_model_the_records_measured(trained, rule, series):
    """choose() from the records alone names a kept checkpoint, and evaluating that checkpoint again on the
    monitored images reproduces the record of its epoch exactly: it is the model training saw at that epoch."""
    cfg, run = trained
    evaluation = Evaluation(("clean",), n=32)
    if rule.needs_rerank:
        run_evaluation(run, evaluation, rule, Runtime())  # the rerank evaluations of the candidates
    view = EvaluatedRun(run, evaluation, rule)
    epoch = rule.choose(run.records(), cfg.epochs, series, view.rerank(series) if rule.needs_rerank else None)
    assert epoch is not None
    ckpt = Checkpoint(series, epoch)
    assert ckpt in CheckpointStore(run.checkpoints_dir).stored()
    assert view.resolve("best" if not series else f"best_{series}") == ckpt
    info = DATASETS.get(cfg.dataset)
    eps, step = attack_budget(cfg, info)
    _, test = load_dataset(cfg.dataset)
    config = EvalConfig(attack_specs(cfg.eval_attacks, eps=eps, step=step, dataset=info.name), seed=cfg.seed)
    again = evaluate(load_model(cfg, run, ckpt, Runtime()), test.subset(torch.arange(cfg.eval_n)), 10, config, "cpu")
    recorded = monitored(run.records()[epoch], "test", series)
    for attack in cfg.eval_attacks:
        assert again["attacks"][attack]["per_class"] == recorded["attacks"][attack]["per_class"], attack


def test_kept_checkpoints_are_only_the_candidates(trained):
    cfg, run = trained
    records = run.records()
    rules = retention_rules(cfg.eval_attacks, cfg.monitor_on)
    expected = {Checkpoint(s, e) for s in ("", "ema") for e in kept_epochs(records, cfg.epochs, s, rules)}
    assert CheckpointStore(run.checkpoints_dir).stored() == expected
    assert Checkpoint("", cfg.epochs - 1) in expected and Checkpoint("ema", cfg.epochs - 1) in expected
