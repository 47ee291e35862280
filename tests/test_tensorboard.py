"""TensorBoard event files of a real smoke run hold every number of records.jsonl, read back with
TensorBoard's own EventAccumulator; a resumed epoch replaces the events of the attempt it redoes."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.config import RunConfig
from bench.store import RunStore
from bench.tensorboard_log import TensorBoardLog, scalars, step_of
from bench.train import train_run

SMALL = dict(dataset="fmnist", model="tiny-cnn", train_limit=256, batch_size=128, attack_steps=2,
             eval_attacks=("clean", "pgd20"), eval_n=64)


def events(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return acc


def test_scalars_flatten_nested_records_and_skip_non_numbers():
    record = {"epoch": 4, "lr": 0.1, "ok": True, "note": "x", "missing": None, "class_eps": [0.1, 0.2],
              "eval": {"attacks": {"pgd20": {"spec": {"eps": 0.1}, "acc": 0.5, "per_class": [0.4, None]}}}}
    assert dict(scalars(record)) == {"lr": 0.1, "ok": 1.0, "class_eps/0": 0.1, "class_eps/1": 0.2,
                                     "eval/attacks/pgd20/acc": 0.5, "eval/attacks/pgd20/per_class/0": 0.4}
    assert step_of(record) == 5


def test_smoke_run_writes_every_record_number_as_a_scalar(tmp_path):
    cfg = RunConfig(method="pgd_at+ccm", hp=(("ccm.begin_epoch", "0"),), epochs=2, **SMALL)
    run = RunStore(tmp_path).run_dir(cfg)
    train_run(cfg, run)
    records = run.records()
    expected = {(tag, step_of(r)): value for r in records for tag, value in scalars(r)}
    acc = events(run.path)
    tags = set(acc.Tags()["scalars"])
    assert tags == {tag for tag, _ in expected}
    for needed in ("train_loss", "lr", "train_acc", "eval/attacks/pgd20/acc", "eval/attacks/pgd20/worst_class_acc",
                   "eval/attacks/pgd20/per_class/9", "ccm.class_eps/0", "ccm.lam1"):
        assert needed in tags
    logged = {(tag, e.step): e.value for tag in tags for e in acc.Scalars(tag)}
    assert logged.keys() == expected.keys()
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, rel=1e-6)


def test_resumed_epoch_replaces_the_events_of_the_attempt_it_redoes(tmp_path):
    with TensorBoardLog(tmp_path, first_epoch=0) as board:  # crashed after epoch 1's record, before its checkpoint
        board.log({"epoch": 0, "train_loss": 2.0})
        board.log({"epoch": 1, "train_loss": 1.5})
    with TensorBoardLog(tmp_path, first_epoch=1) as board:  # the resumed process redoes epoch 1
        board.log({"epoch": 1, "train_loss": 1.4})
        board.log({"epoch": 2, "train_loss": 1.2})
    logged = [(e.step, e.value) for e in events(tmp_path).Scalars("train_loss")]
    assert logged == [(1, 2.0), (2, pytest.approx(1.4)), (3, pytest.approx(1.2))]
