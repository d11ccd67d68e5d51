"""The server's pool of training processes: a bounded number at once, a queue, runs released when they
finish, saved when their page is gone, and read back (and resumed exactly) after a restart."""
import time

import pytest
import torch

from conftest import small_config
from core.control import RunState
from core.engine import Trainer
from core.errors import LabError
from core.pool import Pool

A, B = "a1b2c3d4", "e5f6a7b8"


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def pool(tmp_path):
    pools = []

    def make(**options):
        pools.append(Pool(tmp_path / "runs", **options))
        return pools[-1]
    yield make
    for p in pools:
        p.close()


@pytest.mark.slow
def test_runs_beyond_the_limit_queue_and_all_finish_released(pool, digits):
    p = pool(limit=1)
    first = p.submit(A, "vae", small_config(), steps=150, data=digits)
    second = p.submit(A, "beta", small_config(objective="beta-vae"), steps=30, data=digits)
    third = p.submit(B, "other", small_config(), steps=30, data=digits)
    wait_until(lambda: first.state == RunState.RUNNING)
    assert second.state == RunState.QUEUED and second.ahead == 0 and third.ahead == 1
    assert p.active() == 1
    with pytest.raises(LabError, match="queued .*no weights yet"):
        third.snapshot()
    for run in (first, second, third):
        run.join(timeout=180)
        assert p.active() <= 1
    assert [r.state for r in (first, second, third)] == [RunState.RECORDED] * 3
    assert p.active() == 0  # every finished run released its process
    assert second.step_count == 30 and second.snapshot().step == 30
    assert list(p.runs(A)) == ["vae", "beta"] and list(p.runs(B)) == ["other"]  # no owner sees another's


@pytest.mark.slow
def test_a_run_stopped_in_the_queue_never_starts_and_a_live_one_is_saved(pool, digits):
    p = pool(limit=1)
    live = p.submit(A, "live", small_config(), steps=100_000, data=digits)
    queued = p.submit(A, "queued", small_config(), steps=10, data=digits)
    wait_until(lambda: live.state == RunState.RUNNING and live.step_count > 20)
    queued.stop()
    live.stop()
    assert queued.state == RunState.STOPPED and live.state == RunState.RECORDED and p.active() == 0
    assert live.snapshot().step == live.step_count > 20


@pytest.mark.slow
def test_an_owner_unseen_past_the_grace_is_saved_and_resumes_exactly(pool, digits, tmp_path):
    p = pool(limit=2, grace=1.0)
    run = p.submit(A, "vae", small_config(), steps=400, data=digits)
    wait_until(lambda: run.state == RunState.INTERRUPTED)  # nobody touches A for a second
    stopped_at = run.step_count
    assert 0 < stopped_at < 400 and "page was closed" in run.error and p.active() == 0
    p.touch(A)
    p.grace = 60.0
    p.requeue(A, "vae", digits)
    run.join(timeout=180)
    assert run.state == RunState.RECORDED and run.step_count == 400
    straight = Trainer(small_config(), digits)
    straight.step(400)
    got, want = run.snapshot().network.state_dict(), straight.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.slow
def test_a_run_whose_page_closed_gives_its_core_to_a_waiting_run_at_once(pool, digits):
    """Within the grace, a closed tab's run keeps its core only while nobody waits for one; and a run
    whose page is open keeps it however long others wait."""
    p = pool(limit=1, grace=600.0)
    open_tabs = {"tab-a", "tab-b"}
    assert p.claim(A, "tab-a", open_tabs.__contains__) and p.claim(B, "tab-b", open_tabs.__contains__)
    first = p.submit(A, "vae", small_config(), steps=100_000, data=digits)
    wait_until(lambda: first.state == RunState.RUNNING and first.step_count > 10)
    waiting = p.submit(B, "next", small_config(), steps=20, data=digits)
    time.sleep(2.0)
    assert first.state == RunState.RUNNING and waiting.state == RunState.QUEUED  # A's page is open: it keeps its core
    open_tabs.discard("tab-a")  # A closes its tab
    closed = time.monotonic()
    wait_until(lambda: waiting.state in (RunState.STARTING, RunState.RUNNING, RunState.RECORDED), timeout=60)
    assert time.monotonic() - closed < 10  # seconds, not the 600 s grace
    assert first.state == RunState.INTERRUPTED and "closed" in first.error
    assert first.snapshot().step == first.step_count > 10  # saved, to resume where it stopped
    waiting.join(timeout=120)
    assert waiting.state == RunState.RECORDED


@pytest.mark.slow
def test_after_a_restart_an_owners_runs_are_read_back_and_resume(pool, digits, tmp_path):
    p = pool(limit=2)
    done = p.submit(A, "done", small_config(), steps=20, data=digits)
    cut = p.submit(A, "cut", small_config(), steps=100_000, data=digits)
    done.join(timeout=120)
    wait_until(lambda: cut.state == RunState.RUNNING and cut.step_count > 30)
    p.close()  # the server stops: the live run is saved
    again = pool(limit=2)
    runs = again.runs(A)
    assert list(runs) == ["done", "cut"] and again.runs(B) == {}
    assert runs["done"].state == RunState.RECORDED and runs["done"].step_count == 20
    assert runs["cut"].state == RunState.INTERRUPTED and "resume" in runs["cut"].error
    at = runs["cut"].step_count
    again.requeue(A, "cut", digits)
    wait_until(lambda: runs["cut"].state == RunState.RUNNING and runs["cut"].step_count > at)
    assert runs["cut"].history[:at] == runs["cut"].snapshot().history[:at]
    runs["cut"].stop()


@pytest.mark.parametrize("owner", ["../etc", "A1B2C3D4", "abc", "a1b2c3d4/x", ""])
def test_an_owner_token_is_never_a_path(owner, pool):
    with pytest.raises(LabError, match="not a session token"):
        pool().runs(owner)


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x" * 65])
def test_a_run_name_is_never_a_path(name, pool, digits):
    with pytest.raises(LabError, match="a run name is"):
        pool().submit(A, name, small_config(), steps=5, data=digits)


@pytest.mark.slow
def test_a_finished_run_trains_further_and_branches(pool, digits):
    p = pool(limit=2)
    run = p.submit(A, "vae", small_config(), steps=40, data=digits)
    run.join(timeout=120)
    p.extend(A, "vae", 20, digits)
    branch = p.branch(A, "vae", "vae-beta4", steps=10, settings={"beta": 4.0}, lr=5e-4, data=digits)
    run.join(timeout=120)
    branch.join(timeout=120)
    assert run.state == RunState.RECORDED and run.step_count == 60
    straight = Trainer(small_config(), digits)
    straight.step(60)
    got, want = run.snapshot().network.state_dict(), straight.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # 40 + 20 is 60 straight
    b = branch.snapshot()
    assert branch.state == RunState.RECORDED and b.step in (50, 70)  # from step 40, or 60 if it waited
    assert b.objective.beta == 4.0 and b.config.lr == 5e-4 and b.meta["parent"]["step"] == b.step - 10
    with pytest.raises(LabError, match="not a finished run"):
        p.extend(A, "nope", 5)


def test_a_token_held_by_an_open_session_is_not_taken_by_another(pool):
    p, open_sessions = pool(), {"tab-1"}
    alive = open_sessions.__contains__
    assert p.claim(A, "tab-1", alive)
    assert not p.claim(A, "tab-2", alive)  # a link shared from the open tab
    assert p.claim(A, "tab-1", alive)      # the tab itself, again
    open_sessions.clear()                  # the tab was closed or reloaded
    assert p.claim(A, "tab-2", alive)


@pytest.mark.slow
def test_cancelling_a_queued_resume_keeps_the_run_resumable(pool, digits):
    p = pool(limit=1)
    blocker = p.submit(A, "blocker", small_config(), steps=100_000, data=digits)
    done = p.submit(A, "done", small_config(), steps=10, data=digits)
    wait_until(lambda: blocker.state == RunState.RUNNING)
    blocker.stop()
    done.join(timeout=120)
    blocker2 = p.submit(B, "blocker", small_config(), steps=100_000, data=digits)
    wait_until(lambda: blocker2.state == RunState.RUNNING)
    p.extend(A, "done", 10, digits)  # queued behind B's run
    assert done.state == RunState.QUEUED
    done.stop()
    assert done.state == RunState.INTERRUPTED and done.step_count == 10  # can be resumed later
    blocker2.stop()


@pytest.mark.parametrize("name", ["x.json", "x.safetensors"])
def test_a_run_name_never_collides_with_a_runs_files(name, pool, digits):
    with pytest.raises(LabError, match="a run name is"):
        pool().submit(A, name, small_config(), steps=5, data=digits)


@pytest.mark.slow
def test_live_runs_split_the_cores_and_a_lone_run_gets_them_back(pool, digits):
    """A training process takes all of torch's threads; two of them on the same cores busy-wait for each
    other's (bench/concurrent_runs.py), so the pool splits the cores between its live runs."""
    p = pool(limit=2, cores=2)  # two, whatever this machine has (under xdist a child finds one)
    first = p.submit(A, "first", small_config(), steps=100_000, data=digits)
    wait_until(lambda: first.state == RunState.RUNNING and first.threads == 2)
    second = p.submit(A, "second", small_config(), steps=100_000, data=digits)
    wait_until(lambda: second.state == RunState.RUNNING and first.threads == second.threads == 1)
    steps = first.step_count
    wait_until(lambda: first.step_count > steps + 20)  # and both train on
    second.stop()
    wait_until(lambda: first.threads == 2)
    first.stop()


@pytest.mark.slow
def test_a_training_process_runs_at_the_pools_lower_priority(pool, digits):
    """The pages answer first while runs train: the pool's training process runs `nice` below the server."""
    import os
    p = pool(limit=1, nice=7)
    run = p.submit(A, "vae", small_config(), steps=100_000, data=digits)
    wait_until(lambda: run.state == RunState.RUNNING)
    child = run.inner._process.pid
    assert os.getpriority(os.PRIO_PROCESS, child) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    run.stop()
