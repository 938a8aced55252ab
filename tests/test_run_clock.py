"""detector.training.clock.RunClock: a resumed run's wall time counts on from
its checkpoint's; testing a checkpoint does not add that checkpoint's count; a
checkpoint written without a count leaves the run's wall time unknown (None),
never a part passed off as the whole. (Through rcnn-train's runs:
tests/test_train_entry.py, the interrupted run.)"""

import time
from types import SimpleNamespace

from pytorch_lightning.trainer.states import TrainerFn

from detector.training.clock import KEY, RunClock


def _trainer(fn):
    return SimpleNamespace(state=SimpleNamespace(fn=fn))


def test_a_fresh_run_counts_from_its_start():
    clock = RunClock(time.perf_counter() - 5.0)
    assert clock.resumed_at_step is None and 5.0 <= clock.seconds() < 60.0
    checkpoint = {}
    clock.on_save_checkpoint(_trainer(TrainerFn.FITTING), None, checkpoint)
    assert 5.0 <= checkpoint[KEY] <= clock.seconds()


def test_a_resumed_fit_counts_on_from_the_checkpoint():
    # also when the checkpoint is past the last step (the test was interrupted): Lightning
    # then skips the training, and its hooks, altogether
    clock = RunClock(time.perf_counter() - 5.0)
    clock.on_load_checkpoint(_trainer(TrainerFn.FITTING), None,
                             {KEY: 1000.0, "global_step": 270})
    assert clock.resumed_at_step == 270 and 1005.0 <= clock.seconds() < 1060.0


def test_testing_a_checkpoint_adds_nothing():
    clock = RunClock(time.perf_counter() - 5.0)
    clock.on_load_checkpoint(_trainer(TrainerFn.TESTING), None,
                             {KEY: 1000.0, "global_step": 270})
    assert clock.resumed_at_step is None and clock.seconds() < 60.0


def test_a_checkpoint_without_a_count_leaves_the_time_unknown():
    clock = RunClock(time.perf_counter())
    clock.on_load_checkpoint(_trainer(TrainerFn.FITTING), None, {"global_step": 3})
    assert clock.resumed_at_step == 3 and clock.seconds() is None
    checkpoint = {}
    clock.on_save_checkpoint(_trainer(TrainerFn.FITTING), None, checkpoint)
    assert checkpoint[KEY] is None  # and so on, through every later resume
