import threading
import time

import pytest
import torch

from conftest import small_config
from core.bundle import Ref
from core.control import Controller, LocalRun, RecordedRun, RunError, RunState
from core.engine import Diverged, Trainer, pick_device
from core.errors import ConfigError


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_the_same_numbers_and_another_seed_does_not(digits):
    a, b, c = (Trainer(small_config(seed=s), digits) for s in (7, 7, 8))
    ha, hb, hc = a.step(20), b.step(20), c.step(20)
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    assert same(weights(a.model), weights(b.model))
    assert [r["loss"] for r in ha] != [r["loss"] for r in hc]


def test_interleaved_runs_match_runs_alone(digits):
    """Each trainer owns its random stream, so a race of runs is reproducible run by run."""
    alone = Trainer(small_config(seed=3), digits)
    alone.step(10)
    x, y = Trainer(small_config(seed=3), digits), Trainer(small_config(seed=4, objective="beta-vae"), digits)
    for _ in range(10):
        x.step(1)
        y.step(1)
    assert [r["loss"] for r in alone.history] == [r["loss"] for r in x.history]


def test_training_lowers_the_loss_and_keeps_history(digits):
    t = Trainer(small_config(lr=3e-3), digits)
    t.step(300)
    first = sum(r["loss"] for r in t.history[:20]) / 20
    last = sum(r["loss"] for r in t.history[-20:]) / 20
    assert last < 0.8 * first
    assert [r["step"] for r in t.history] == list(range(1, 301))
    row = t.history[-1]
    assert {"loss", "recon", "kl", "kl_per_dim", "grad_norm", "beta", "lr", "seconds"} <= set(row)
    assert len(row["kl_per_dim"]) == 4
    assert t.epoch == 300 / 12  # 1,500 images in batches of 128: an epoch is 12 steps, the last one short


def test_beta_and_learning_rate_change_mid_run(digits):
    t = Trainer(small_config(objective="beta-vae"), digits)
    t.step(3)
    t.set_beta(8.0)
    t.set_lr(1e-4)
    t.step(2)
    assert [r["beta"] for r in t.history] == [4.0] * 3 + [8.0] * 2
    assert [r["lr"] for r in t.history] == [1e-3] * 3 + [1e-4] * 2
    row = t.history[-1]
    assert row["loss"] == pytest.approx(row["recon"] + 8.0 * row["kl"], rel=1e-5)
    for bad in (-1, float("nan")):
        with pytest.raises(ConfigError):
            t.set_beta(bad)
    for bad in (0, float("nan"), float("inf"), -1e-3):
        with pytest.raises(ConfigError):
            t.set_lr(bad)


def test_snapshot_is_a_frozen_copy(digits):
    t = Trainer(small_config(), digits)
    t.step(5)
    snap = t.snapshot()
    before = weights(snap.network)
    t.step(5)
    assert same(before, weights(snap.network)) and not same(before, {k: v.cpu() for k, v in weights(t.model).items()})
    assert snap.network.sample(3).shape == (3, 1, 8, 8) and not snap.network.training
    # the snapshot is the model at that step: its identity, history and data go with it
    assert snap.ref == Ref(t.run_id, 5) and len(snap.history) == 5 and snap.n_train == len(digits.train_x)
    assert t.snapshot().ref == Ref(t.run_id, 10) and Trainer(small_config(), digits).run_id != t.run_id


def test_background_run_pauses_resumes_and_stops(digits):
    t = LocalRun(small_config(), digits)
    # The stepping loop asks its controller how many steps it may take before each chunk; the step count at
    # each answer of none is noted, so the test waits for the loop's own looks rather than for a time.
    idle, looked = [], threading.Condition()
    steps_now = t.control.steps_now

    def observed(step_count, chunk):
        n = steps_now(step_count, chunk)
        if n == 0:
            with looked:
                idle.append(step_count)
                looked.notify_all()
        return n
    t.control.steps_now = observed
    t.start()
    deadline = time.time() + 30
    while t.step_count < 5 and time.time() < deadline:
        time.sleep(0.01)
    t.pause()
    assert t.state == "paused"
    with looked:  # the chunk in flight ended, the loop saw the pause, woke and looked again
        assert looked.wait_for(lambda: len(idle) >= 2, timeout=30)
    held = idle[0]
    assert t.state == "paused" and idle[1] == held == t.step_count  # no step between two looks
    snap = t.snapshot()  # readable while paused
    assert snap is not None
    t.resume()
    while t.step_count < held + 5 and time.time() < deadline:
        time.sleep(0.01)
    assert t.step_count > held and t.state == "running"
    t.stop()  # returns once the stepping thread has ended
    assert t.state == "stopped"
    stopped_at = t.step_count
    assert not t._thread.is_alive() and t.step_count == stopped_at


def test_background_run_to_a_step_count(digits):
    t = LocalRun(small_config(), digits)
    t.start(steps=25)
    t.join(timeout=60)
    assert t.state == RunState.DONE and t.step_count == 25
    t.start(steps=5)  # a finished run can train on
    t.join(timeout=60)
    assert t.state == RunState.DONE and t.step_count == 30


def test_the_run_state_machine_refuses_illegal_moves(digits):
    control = Controller()
    control.pause()  # nothing to pause: no move
    assert control.state == RunState.READY
    control.start(0, 10)
    assert control.steps_now(0, 5) == 5 and control.steps_now(8, 5) == 2
    assert control.steps_now(10, 5) == 0 and control.state == RunState.DONE
    control.start(10, 10)
    control.diverged("training diverged at step 11")
    with pytest.raises(RunError, match="diverged at step 11"):
        control.start(11)
    with pytest.raises(RunError):
        RecordedRun(Trainer(small_config(), digits).snapshot()).start()


def test_nan_in_the_data_stops_the_run_and_keeps_the_last_good_weights(digits):
    t = Trainer(small_config(), digits)
    t.step(3)
    good = weights(t.model)
    t.train_x = t.train_x.clone()
    t.train_x[:] = float("nan")  # every later batch is poisoned
    with pytest.raises(Diverged, match=r"diverged at step 4: .*recon.*kept from step 3"):
        t.step(5)
    assert t.diverged and t.step_count == 3
    assert same(good, weights(t.model))
    assert all(torch.isfinite(v).all() for v in t.model.state_dict().values())
    with pytest.raises(Diverged):
        t.step(1)


def test_numbers_gathered_every_few_steps_are_the_numbers_of_every_step(digits):
    """On a GPU the logged numbers come to the host every SYNC_EVERY steps, not every step; forced on the
    CPU, the run is the same run, row for row, and every step's row is there after step(n)."""
    each, batched = Trainer(small_config(), digits), Trainer(small_config(), digits, sync_every=16)
    assert batched._found_inf is not None and each._found_inf is None
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert untimed(each.step(37)) == untimed(batched.step(37))
    assert untimed(each.history) == untimed(batched.history) and len(batched.history) == 37
    # step(n) returns every row it took, the live rows' steps too (a live row gathers the numbers first)
    assert [r["step"] for r in batched.step(20)] == [r["step"] for r in each.step(20)] == list(range(38, 58))
    assert same(weights(each.model), weights(batched.model))


@pytest.mark.parametrize("sync_every", [1, 16])
def test_a_bad_step_inside_a_gathered_block_is_not_applied_nor_any_after_it(digits, sync_every):
    """A non-finite step in the middle of a block the host has not looked at yet: it and every later step
    of the block are skipped by the fused optimizer on the device, so the run ends as if checked at once."""
    t = Trainer(small_config(), digits, sync_every=sync_every)
    t.step(3)
    t.train_x = t.train_x.clone()
    fifth = t._order[t._pos + t.batch_size:t._pos + 2 * t.batch_size]  # the images of step 5 alone
    t.train_x[fifth] = float("nan")
    reference = Trainer(small_config(), digits)
    reference.step(4)
    with pytest.raises(Diverged, match=r"diverged at step 5: .*kept from step 4"):
        t.step(8)
    assert t.step_count == 4 and [r["step"] for r in t.history] == [1, 2, 3, 4]
    assert same(weights(reference.model), weights(t.model))
    mine, theirs = t.optimizer.state_dict()["state"], reference.optimizer.state_dict()["state"]
    assert all(same(mine[i], theirs[i]) for i in theirs)


def test_divergence_in_a_background_run_is_reported_not_lost(digits):
    t = LocalRun(small_config(), digits)
    t.trainer.train_x = torch.full_like(t.trainer.train_x, float("inf"))
    t.start(steps=10)
    t.join(timeout=30)
    assert t.state == "diverged" and "step 1" in t.error and t.step_count == 0


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        pick_device("tpu7")


def test_run_config_refuses_bad_values():
    for kw in ({"lr": float("nan")}, {"lr": -1.0}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            small_config(**kw)


def test_a_compiled_step_is_the_same_step(digits, monkeypatch):
    """--compile runs the objective's forward through torch.compile. With the eager backend (no code
    generation, so it runs here in seconds) every number must be the eager step's; the step number is
    dynamic, so a run compiles once, not every step."""
    import torch._dynamo
    monkeypatch.setenv("VAELAB_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    eager, compiled = Trainer(small_config(), digits), Trainer(small_config(compile="default"), digits)
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert untimed(eager.step(20)) == untimed(compiled.step(20))
    assert same(weights(eager.model), weights(compiled.model))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 3
    with pytest.raises(ConfigError, match="compile must be one of"):
        small_config(compile="fast")
