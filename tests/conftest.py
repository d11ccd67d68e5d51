import os
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
# Tests run on the real datasets in ../shared/data unless told otherwise; never write there.
os.environ.setdefault("VAELAB_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("VAELAB_OFFLINE", "1")
os.environ["VAELAB_WATCH_ROOTS"] = "none"  # the pages never list the run folders in this machine's ~/vaelab-runs
# Under pytest-xdist the workers share the cores: one torch thread each, here and in the servers and
# training processes the tests start (threads spinning for cores another worker holds slow both).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # ... and their training processes at the workers' own priority: at a lower one (the dashboard's default,
    # which keeps a laptop's pages quick) a run starves whenever the other worker is busy.
    os.environ.setdefault("VAELAB_TRAINING_NICE", "0")
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

HAVE_SHARED = (Path(os.environ["VAELAB_DATA"]) / "MNIST" / "raw").exists()
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason="needs the datasets in ../shared/data (VAELAB_DATA)")


@pytest.fixture(scope="session")
def digits():
    from core import data
    return data.load("digits")


@pytest.fixture(scope="session")
def mnist():
    from core import data
    return data.load(data.DataSpec("mnist", binarize="dynamic"))


def small_config(**kw):
    from core.data import DataSpec
    from core.config import RunConfig
    from core.models import ModelConfig
    model = kw.pop("model", ModelConfig(hidden=(64,), latent_dim=4))
    return RunConfig(data=kw.pop("data", DataSpec("digits")), model=model, device="cpu", **kw)


# ---------------------------------------------------------------- the dashboard in AppTest

APP = str(ROOT / "dashboard" / "app.py")


def session_runs(at) -> dict:
    """The runs of an AppTest's browser session: the server's pool, by the session's token."""
    from dashboard.state import pool
    return pool().runs(at.session_state["owner"])


def train(at, steps, objectives=None):
    """Set the Train page's sidebar, press Train, wait for every run to finish, and re-render."""
    if objectives:
        at.sidebar.multiselect(key="objectives").set_value(objectives).run()
    at.sidebar.number_input(key="steps").set_value(steps)
    at.sidebar.button[0].click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    runs = session_runs(at)
    for t in runs.values():
        t.join(timeout=120)
    at.run()
    return runs


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))  # never list or write the shipped checkpoints
    monkeypatch.setenv("VAELAB_RUNS", str(tmp_path.with_name(tmp_path.name + "-live")))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    return at



@pytest.fixture
def streamlit_server(tmp_path):
    """A real `streamlit run` of the dashboard on a free localhost port; yields its base URL."""
    from sessions import serve
    env = {"VAELAB_CHECKPOINTS": str(tmp_path / "checkpoints"), "VAELAB_RUNS": str(tmp_path / "runs")}
    with serve(env, log=tmp_path / "server.log") as (url, _):
        yield url


# ---------------------------------------------------------------- the quick subset

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts real servers, browsers, training processes, Ray or sweeps, "
                                       "trains long, or re-measures the shipped checkpoints; -m 'not slow' leaves "
                                       "them out (the quick subset)")


# Slow tests of the files whose tests are kept as they are, marked here rather than in the file: the shipped
# checkpoints re-measured, a run trained past step 1,000, a run killed at random moments (processes).
SLOW_ELSEWHERE = (
    "test_shipped.py::test_shipped_checkpoint_reproduces_its_recorded_metrics",
    "test_resume.py::test_a_run_saved_past_step_1000_resumes_exactly_from_its_thinned_history",
    "test_resume.py::test_a_run_killed_at_random_moments_always_resumes",
)


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("[")[0].endswith(SLOW_ELSEWHERE):
            item.add_marker(pytest.mark.slow)


# ---------------------------------------------------------------- the end of the run

def pytest_sessionfinish(session, exitstatus):
    """Let the dashboard's background UMAP compile (dashboard.state.warm_up, started by the Latent map
    tests) finish rather than be cut off mid-compile at exit, and keep the run's status for the exit."""
    import threading
    for thread in threading.enumerate():
        if thread.name == "vaelab-umap-warm-up":
            thread.join(timeout=300)
    session.config.stash[EXIT_STATUS] = int(exitstatus)


EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the process with the suite's status once pytest has reported. After all tests had passed,
    the interpreter's teardown once aborted ("terminate called without an active exception": a native
    thread of one of the libraries loaded by the tests still running while C++ static destructors ran),
    which turned a green run into exit code 134. The result is the test report, not the teardown."""
    import sys
    status = config.stash.get(EXIT_STATUS, None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
