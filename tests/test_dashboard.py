import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from dashboard import plots

APP = str(ROOT / "dashboard" / "app.py")


def test_loss_curves_smooth_each_term():
    history = [{"step": i + 1, "loss": float(i), "recon": 2.0 * i, "kl": 1.0} for i in range(10)]
    fig = plots.loss_curves(history, smooth=5)
    names = [t.name for t in fig.data]
    assert names == ["loss", "recon", "kl"]
    assert list(fig.data[0].x) == list(range(5, 11))
    assert list(fig.data[0].y) == pytest.approx([2, 3, 4, 5, 6, 7])  # running mean of 0..9 over 5


def test_kl_bars_grey_out_collapsed_dimensions():
    fig = plots.kl_per_dim_bars([2.0, 0.001, 0.5], threshold=0.01)
    assert list(fig.data[0].x) == ["z0", "z1", "z2"]
    assert fig.data[0].marker.color[1] == "#bbbbbb" and fig.data[0].marker.color[0] != "#bbbbbb"


def test_image_grid_is_uint8_picture():
    grid = plots.image_grid(torch.ones(6, 1, 8, 8) * 0.5, nrow=3)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3)
    assert grid[1, 1, 0] == 128  # a pixel of the first image, not padding


def test_app_trains_the_offline_default_and_shows_it():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "press **Train**" in at.info[0].value
    at.sidebar.number_input[0].set_value(200)  # steps
    at.sidebar.button[0].click().run()
    assert not at.exception and not at.error
    trainer = at.session_state["trainer"]
    trainer.join(timeout=60)
    assert trainer.state == "done" and trainer.step_count == 200
    at.run()
    assert not at.exception
    assert any("step 200" in m.value for m in at.markdown)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_streamlit_server_serves_the_app():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.headless=true",
                               f"--server.port={port}", "--server.address=127.0.0.1",
                               "--browser.gatherUsageStats=false"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not come up within 60 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"<div id=\"root\">" in r.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("objective", ["cvae", "discrete-is", "iaf"])
def test_app_trains_objectives_that_change_the_model(objective):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.sidebar.selectbox[1].set_value(objective).run()
    at.sidebar.number_input[-3].set_value(100)  # steps
    at.sidebar.button[0].click().run()
    trainer = at.session_state["trainer"]
    trainer.join(timeout=60)
    at.run()
    assert not at.exception and not at.error
    assert trainer.state == "done" and any("step 100" in m.value for m in at.markdown)
