import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import APP, HAVE_SHARED, ROOT, needs_shared, session_runs, small_config, train
from core import checkpoint, explore, pictures
from core import data as datasets
from core.engine import Trainer
from core.models import ModelConfig
from dashboard import live_charts, plots, state
from dashboard.lessons import LESSONS



def wait_for_run(at, name, timeout=60.0):
    """A run just submitted: the pool gives it a process within a moment."""
    deadline = time.monotonic() + timeout
    while session_runs(at)[name].state == "queued":
        assert time.monotonic() < deadline, "the run never left the queue"
        time.sleep(0.05)
    return session_runs(at)[name]


def test_loss_curves_smooth_each_term():
    history = [{"step": i + 1, "loss": float(i), "recon": 2.0 * i, "kl": 1.0} for i in range(10)]
    data = live_charts.loss_data(history, smooth=5)
    assert list(dict.fromkeys(data.term)) == ["loss", "recon", "kl"]
    loss = data[data.term == "loss"]
    assert list(loss.step) == list(range(5, 11))
    assert list(loss.nats) == pytest.approx([2, 3, 4, 5, 6, 7])  # running mean of 0..9 over 5


def test_image_grid_is_uint8_picture():
    grid = plots.image_grid(torch.ones(6, 1, 8, 8) * 0.5, nrow=3)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3)
    assert grid[1, 1, 0] == 128  # a pixel of the first image, not padding


def pad(at) -> dict:
    """The Explore sliders' component as the browser gets it: its data (dims, code, decoder program)."""
    found = at.get("bidi_component")
    assert len(found) == 1, "no latent sliders on the page"
    return json.loads(found[0].proto.json)


def release(at, model_id: str, code: list[float], version: int = 0):
    """What the browser sends when a slider is let go: the pad's state, then the rerun it triggers."""
    at.session_state[f"pad-{version}@{model_id}"] = {"z": list(code)}
    return at.run()


def browser_decode(data: dict, z) -> np.ndarray:
    """The decoder the page sent, read back from its payload (the offsets into the base64 float32 buffer)
    into a core.explore.DecoderProgram and run: pixels (C, H, W)."""
    f32 = np.frombuffer(base64.b64decode(data["weights"]), dtype="<f4")
    program = data["program"]
    layers = [(f32[l["w"]:l["w"] + l["out"] * l["in"]].reshape(l["out"], l["in"]), f32[l["b"]:l["b"] + l["out"]],
               l["act"]) for l in program["layers"]]  # noqa: E741
    n = int(np.prod(program["shape"]))
    offset = None if program["offset"] is None else f32[program["offset"]:program["offset"] + n]
    return explore.DecoderProgram(layers, program["squash"], tuple(program["shape"]), program["scale"], offset)(z)[0]


@pytest.mark.slow
def test_train_page_trains_the_offline_default_and_shows_it(app):
    assert "press **Train**" in app.info[0].value
    assert app.sidebar.selectbox(key="dataset").value == "digits"
    assert app.sidebar.multiselect(key="objectives").value == ["vae"]
    assert any("\\log p" in el.value or "KL" in el.value for el in app.get("latex"))  # the equation is shown
    runs = train(app, 200)
    t = runs["vae"]
    assert t.state == "recorded" and t.step_count == 200 and [r["step"] for r in t.live] == [50, 100, 150, 200]
    assert not app.exception
    line = next(m.value for m in app.markdown if "step 200" in m.value)
    rate = 200 * t.batch_size / t.history[-1]["seconds"]  # its training clock, as saved
    assert f"{rate:,.0f} samples/s · recorded" in line  # a finished run keeps the rate it trained at
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["active units"] == f"{t.live[-1]['au']} / 8"
    mi, se = t.live[-1]["mi"], t.live[-1]["mi_se"]
    assert metrics["MI (nats)"] == plots.mi_text(t.live[-1]) and f"{se:.2f}" in metrics["MI (nats)"]
    assert f"{abs(mi):.2f}" in metrics["MI (nats)"] or mi < 0.01  # the estimate, with its noise
    last = t.history[-1]
    assert metrics["−ELBO"] == f"{last['recon'] + last['kl']:.1f}"  # β = 1: the loss is −ELBO, shown once
    assert "training loss" not in metrics
    assert len(app.get("vega_lite_chart")) == 3 and not app.get("plotly_chart")  # losses, KL heatmap, AU and MI
    assert app.select_slider(key="refresh").value == 2  # how often the live view redraws


def test_a_beta_vae_shows_its_elbo_and_its_training_loss_apart():
    """With β = 8 the loss the optimizer minimizes is not −ELBO (the shipped mnist-beta8 once showed its
    loss, 182.8, as "−ELBO" where its −ELBO is about 156): the page names each for what it is."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["lesson"] = next(name for name, lesson in LESSONS.items() if lesson["shipped"] == ["mnist-vae", "mnist-beta8"])
    at.run()
    assert not at.exception
    last = checkpoint.load(ROOT / "checkpoints" / "mnist-beta8").history[-1]
    labels = [m.label for m in at.metric]
    values = [m.value for m in at.metric]
    assert labels.count("−ELBO") == 2 and labels.count("training loss") == 1  # mnist-vae: β = 1, one number
    assert f"{last['recon'] + last['kl']:.1f}" in values  # mnist-beta8's −ELBO
    assert f"{last['loss']:.1f}" == f"{last['recon'] + 8 * last['kl']:.1f}" in values  # and its loss, β · KL
    assert last["loss"] - (last["recon"] + last["kl"]) > 10


@pytest.mark.slow
def test_the_training_process_gets_all_of_torchs_threads(app):
    """The server runs one torch thread; the training child must not inherit that through the app script,
    which spawn re-imports in the child as its main module, and train at a fraction of the CPU's speed."""
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)
    t = train(app, 50)["vae"]
    assert t.threads == int(fresh.stdout)
    assert any(f"cpu, {t.threads} thread" in c.value for c in app.caption)  # the page says so


@pytest.mark.slow
def test_train_page_controls_change_a_running_run(app, tmp_path):
    app.sidebar.number_input(key="steps").set_value(100_000)
    app.sidebar.button[0].click().run()
    t = wait_for_run(app, "vae")
    try:
        deadline = time.monotonic() + 60
        while len(t.live) < 2 and time.monotonic() < deadline:  # the run trains in a child process
            time.sleep(0.05)
        app.run()
        # While it trains, the KL heatmap is a picture (cheap to redraw), of this run's live rows.
        heat = [i for i in app.get("image") if "KL per dimension" in i.proto.imgs[0].caption]
        marks = [json.dumps(json.loads(c.proto.spec)) for c in app.get("vega_lite_chart")]
        assert len(heat) == 1 and len(marks) == 2 and not any('"rect"' in m for m in marks)  # curves, AU and MI
        assert not app.get("plotly_chart")
        app.button(key="pause-vae").click().run()
        assert t.state == "paused"
        app.number_input(key="beta-vae").set_value(8.0).run()
        app.number_input(key="lr-vae").set_value(3e-4).run()
        assert t.beta == 8.0 and t.lr == 3e-4
        app.button(key="resume-vae").click().run()
        assert t.state == "running"
        app.button(key="save-vae").click().run()
        assert not app.exception and not app.error
        # into this session's own folder: no other session lists it or can overwrite it
        assert (tmp_path / "runs" / app.session_state["owner"] / "digits-vae-z8.json").exists()
        app.button(key="stop-vae").click().run()
        assert t.state == "recorded" and t.threads  # stopped, saved, its process released
    finally:
        t.stop()


@pytest.mark.slow
def test_train_page_races_several_objectives_on_one_seed(app):
    runs = train(app, 100, objectives=["vae", "beta-vae"])
    assert list(runs) == ["vae", "beta-vae"]
    a, b = runs.values()
    assert a.config.seed == b.config.seed and a.config.model == b.config.model
    assert runs["beta-vae"].beta == 4.0
    assert len(app.get("vega_lite_chart")) == 1 + 2 * 2  # the race overlay, then heatmap and AU/MI per run
    assert sum("step 100" in m.value for m in app.markdown) == 2


@pytest.mark.slow
def test_train_page_races_remedies_on_a_pixelcnn_decoder(app):
    app.sidebar.slider(key="pixelcnn").set_value(2)
    runs = train(app, 30, objectives=["vae", "bn-vae"])
    assert not app.exception and not app.error
    model = runs["vae"].config.model
    assert (model.pixelcnn_layers, model.pixelcnn_channels, model.pixelcnn_z) == (2, 24, "bias")
    assert runs["bn-vae"].config.model == model
    # the runs stopped, so their pictures are drawn: test images, reconstructions and samples per run
    assert sum("samples from the prior" in i.proto.imgs[0].caption for i in app.get("image")) == 2
    if not HAVE_SHARED:
        return
    # a PixelCNN models binary images: Frey Faces' grey levels are refused in one line, before anything runs
    app.sidebar.selectbox(key="dataset").set_value("frey").run()
    app.sidebar.button[0].click().run()
    assert not app.exception and app.error and "binary one-channel" in app.error[0].value


def test_the_strong_decoder_lesson_opens_on_its_recorded_runs_and_sets_the_pixelcnn():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["lesson"] = "A strong decoder ignores z"
    at.run()
    assert not at.exception and not at.error
    assert at.sidebar.slider(key="pixelcnn").value == 8 and at.sidebar.number_input(key="steps").value == 400
    assert at.sidebar.multiselect(key="objectives").value == ["vae", "aggressive", "bn-vae", "delta-vae"]
    shown = " ".join(m.value for m in at.markdown)
    assert all(name in shown for name in LESSONS["A strong decoder ignores z"]["shipped"])


def test_train_page_says_what_is_wrong_instead_of_failing(app):
    app.sidebar.selectbox(key="dataset").set_value("svhn").run()
    app.sidebar.button[0].click().run()
    assert not app.exception
    assert app.error and "svhn" in app.error[0].value.lower()
    assert not session_runs(app)


@pytest.mark.slow
def test_two_browser_sessions_training_at_once_do_not_interfere(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("VAELAB_RUNS", str(tmp_path.with_name(tmp_path.name + "-live")))
    one, two = (AppTest.from_file(APP, default_timeout=60).run() for _ in range(2))
    two.sidebar.multiselect(key="objectives").set_value(["beta-vae"]).run()
    for at in (one, two):
        at.sidebar.number_input(key="steps").set_value(150)
    one.sidebar.button[0].click().run()
    two.sidebar.button[0].click().run()  # both train at the same time, in the same process
    a, b = session_runs(one)["vae"], session_runs(two)["beta-vae"]
    a.join(120)
    b.join(120)
    assert list(session_runs(one)) == ["vae"] and list(session_runs(two)) == ["beta-vae"]
    alone = Trainer(a.config, a.data, live_every=0)
    alone.step(150)
    # as if it had run alone (the finished run is read from its checkpoint: 5 significant digits)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in checkpoint.rounded(alone.history)]


@pytest.mark.slow
def test_explore_sliders_decode_in_the_browser_as_the_server_does(app):
    run = train(app, 150)["vae"]
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="source").value == "run: vae"
    data = pad(app)
    assert [d["label"].split(" ")[0] for d in data["dims"]] == [f"z{i}" for i in range(8)]
    first = explore.encode_mean(run.snapshot(), run.data.test_x[0], run.data.test_y[0])
    assert data["code"] == [round(v, 2) for v in first]  # test image 0's code, as the link keeps it
    assert data["program"] is not None  # an MLP decoder: decoded in the browser
    network = run.snapshot().network
    for code in ([0.0] * 8, [2.5, -1.0, 0.3, 0.0, 1.0, -2.0, 0.5, 0.1]):
        want = explore.decode(network, code)[0].clamp(0, 1).numpy()
        assert np.abs(browser_decode(data, code) - want).max() < 1e-5
    # A code let go in the browser reaches the server's picture and the link.
    before = app.session_state["decoded"].clone()
    release(app, run.run_id, [3.0] + [0.0] * 7)
    assert not app.exception and (app.session_state["decoded"] - before).abs().max() > 0.01
    assert app.query_params["z"].split(",")[0] == "3.00" and pad(app)["code"][0] == 3.0
    app.number_input(key="image").set_value(5)
    app.button[0].click().run()  # "Encode it": a new pad, starting from a real image's code
    assert not app.exception
    assert pad(app)["code"] == pytest.approx(app.session_state[f"start@{run.run_id}"], abs=1e-6)
    assert pad(app)["key"].startswith(f"pad-1@{run.run_id}")


@pytest.mark.slow
def test_explore_decodes_on_the_server_when_asked_or_when_the_browser_cannot(app):
    run = train(app, 60)["vae"]
    app.query_params["decode"] = "server"
    app.switch_page("views/explore.py").run()
    data = pad(app)
    assert data["program"] is None and data["image"].startswith("data:image/png;base64,")
    first = data["image"]
    release(app, run.run_id, [3.0] + [0.0] * 7)
    assert pad(app)["image"] != first  # the picture of the code that came back


@pytest.mark.parametrize("objective", ["cvae", "discrete-is", "iaf"])
@pytest.mark.slow
def test_pages_work_for_objectives_that_change_the_model(app, objective):
    runs = train(app, 100, objectives=[objective])
    assert runs[objective].state == "recorded" and any("step 100" in m.value for m in app.markdown)
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    if objective == "cvae":
        assert app.selectbox(key="label").options == [str(i) for i in range(10)]
    if objective == "discrete-is":
        assert len(app.toggle) >= 8  # one toggle per bit (plus "hide inactive")


def test_explore_shows_a_corrupt_checkpoint_as_an_error_card(app, tmp_path, digits):
    t = Trainer(small_config(), digits)
    t.step(5)
    t.save(tmp_path / "good")
    t.save(tmp_path / "bad")
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    app.switch_page("views/explore.py").run()
    assert app.selectbox(key="source").options == ["bad", "good"]  # shown by name; the value is "file: good"
    assert app.error and "checksum" in app.error[0].value and not app.exception
    app.selectbox(key="source").set_value("file: good").run()
    assert not app.error and not app.exception and pad(app)["dims"]


def test_image_grid_enlarges_pixels_into_sharp_blocks():
    x = torch.rand(2, 1, 3, 3)
    small, big = plots.image_grid(x, nrow=2), plots.image_grid(x, nrow=2, scale=4)
    assert big.shape == (small.shape[0] * 4, small.shape[1] * 4, 3)
    assert (big[::4, ::4] == small).all() and (big[1::4, 2::4] == small).all()


# ---------------------------------------------------------------- figure builders

def test_kl_heatmap_is_dimension_by_step():
    live = [{"step": 50, "kl_per_dim": [1.0, 0.5, None]}, {"step": 100, "kl_per_dim": [2.0, 0.0, 0.1]}]
    data, spec = live_charts.heatmap_chart(live)
    cell = {(d, s): (kl, end) for d, s, kl, end in zip(data.dim, data.step, data.kl, data.end)}
    assert sorted(cell) == [(d, s) for d in range(3) for s in (50, 100)]
    assert cell[0, 100] == (2.0, 150) and cell[1, 100][0] == 0.0 and cell[0, 50][1] == 100  # each step its own column
    assert np.isnan(cell[2, 50][0])  # a missing value stays a gap
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == [0, 2.0]


def test_the_kl_heatmap_as_a_picture_is_dimension_by_step():
    live = [{"step": 50, "kl_per_dim": [1.0, 0.5, None]}, {"step": 100, "kl_per_dim": [2.0, 0.0, 0.1]}]
    image = pictures.kl_heatmap_image(live, height=30, width=20)
    assert image.shape == (30, 20, 3) and image.dtype == np.uint8
    top, collapsed, missing = image[0, 15], image[15, 15], image[25, 5]  # z0 at step 100; z1 at 100; z2 at 50
    assert tuple(top) == (253, 231, 37) and tuple(collapsed) == (68, 1, 84)  # Viridis' top and bottom
    assert tuple(missing) == (128, 128, 128)  # a missing value is grey, not zero
    assert (image[0, :10] != image[0, 10:]).any(axis=-1).all()  # each step its own column


def test_live_metrics_draws_au_mi_and_the_ceiling():
    live = [{"step": s, "au": a, "mi": m, "mi_ceiling": 6.2} for s, a, m in [(50, 3, 1.0), (100, 5, 2.5)]]
    data, spec = live_charts.metrics_chart(live, dims=8)
    assert list(data.au) == [3, 5] and list(data.mi) == [1.0, 2.5] and list(data.mi_ceiling) == [6.2, 6.2]
    fields = [layer["encoding"]["y"]["field"] for layer in spec["layer"][1]["layer"]]
    assert fields == ["mi_low", "mi", "mi_ceiling"] and spec["resolve"]["scale"]["y"] == "independent"


def test_race_curves_one_line_per_run_and_skips_empty_runs():
    runs = {"a": [{"step": i + 1, "loss": 1.0} for i in range(30)], "b": []}
    fig = plots.race_curves(runs, smooth=10)
    assert [t.name for t in fig.data] == ["a"] and len(fig.data[0].x) == 21


def test_compare_figures():
    kl = plots.kl_compare({"vae": [1.0, 2.0], "beta": [0.0, 0.5]})
    assert [t.name for t in kl.data] == ["vae", "beta"] and list(kl.data[1].y) == [0.0, 0.5]
    from core.diagnostics.aggregate_posterior import AggregatePosteriorResult
    agg = AggregatePosteriorResult([-1.0, 0.0, 1.0], [[0.25, 0.75], [0.5, 0.5]], [0.34, 0.34], [0, 0], [1, 1],
                                   [0, 0], 0.0, 0.0)
    fig = plots.aggregate_vs_prior({"vae": agg}, dim=1)
    assert list(fig.data[0].x) == [-0.5, 0.5] and list(fig.data[0].y) == [0.5, 0.5]
    assert fig.data[-1].name == "prior p(z)" and list(fig.data[-1].y) == [0.34, 0.34]


def test_latent_scatter_shows_each_points_image_on_hover_and_reports_selections():
    coords, details = [[0, 0], [1, 1], [2, 2]], {"test image": [7, 8, 9]}
    images = plots.png_data_uris(torch.rand(3, 1, 8, 8), scale=2)
    assert all(u.startswith("data:image/png;base64,") for u in images)
    assert Image.open(io.BytesIO(base64.b64decode(images[0].split(",")[1]))).size == (16, 16)  # 8 x 8 pixels as 2 x 2 blocks
    assert Image.open(io.BytesIO(base64.b64decode(plots.png_data_uris(torch.rand(1, 1, 28, 28))[0][22:]))).size == (56, 56)
    spec = plots.latent_scatter(coords, [3, 1, 3], "label", details, images, categorical=True).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [r["image"] for r in rows] == images and [r["test image"] for r in rows] == [7, 8, 9]
    assert [t["field"] for t in spec["encoding"]["tooltip"]] == ["image", "test image"]  # Vega draws "image"
    assert spec["encoding"]["color"]["type"] == "nominal" and {p["name"] for p in spec["params"]} == {"pick", "box"}
    by_value = plots.latent_scatter(coords, [0.1, 0.2, 0.3], "KL", details, None, categorical=False).to_dict()
    assert by_value["encoding"]["color"]["type"] == "quantitative"
    assert [t["field"] for t in by_value["encoding"]["tooltip"]] == ["test image"]  # no images given, none shown
    # a click on the middle point, and a box around the last two (the ranges in any order)
    assert plots.selected_points({"pick": [{"point": 1}]}, coords) == [1]
    assert plots.selected_points({"box": {"x": [2.5, 0.5], "y": [0.5, 2.5]}}, coords) == [1, 2]
    assert plots.selected_points({"pick": [{"point": 2}], "box": {"x": [0.5, 2.5], "y": [0.5, 2.5]}}, coords) == [2, 1]
    assert plots.selected_points({}, coords) == []


# ---------------------------------------------------------------- the other pages

@pytest.mark.slow
def test_latent_map_page_computes_once_per_setting(app):
    train(app, 100)
    app.switch_page("views/latent_map.py").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="method").value == "pca"
    # The UMAP warm-up compiles under numba's lock, which the first map waits on: a lowered priority
    # would starve it (and the map) while training keeps the cores busy. A fresh one, read while it
    # imports umap-learn (the page's may be done already).
    state.warm_up.clear()
    warming = state.warm_up(False)
    assert os.getpriority(os.PRIO_PROCESS, warming.native_id) == os.getpriority(os.PRIO_PROCESS, 0)
    warming.join(timeout=300)
    assert app.selectbox(key="colour").value == "label"
    for method in ("tsne", "umap"):
        # the first UMAP in a fresh environment compiles umap-learn's numba kernels: a minute or two
        app.selectbox(key="method").set_value(method).run(timeout=600)
        assert not app.exception and not app.error and app.get("vega_lite_chart")
    app.selectbox(key="colour").set_value("KL per image").run()
    assert not app.exception


@pytest.mark.slow
def test_latent_map_shows_up_to_four_models_side_by_side(app):
    train(app, 60, objectives=["vae", "beta-vae"])
    app.switch_page("views/latent_map.py").run()
    assert len(app.get("vega_lite_chart")) == 1
    beside = app.multiselect(key="map-beside")
    assert beside.options == ["beta-vae (training here)"]  # every model but the one mapped
    beside.set_value(["run: beta-vae"]).run()
    assert not app.exception and not app.error
    charts = app.get("vega_lite_chart")
    assert len(charts) == 2
    specs = [c.proto.spec for c in charts]
    assert '"vae (training here)"' in specs[0] and '"beta-vae (training here)"' in specs[1]  # each titled with its model


@pytest.mark.slow
def test_compare_page_tables_the_runs(app):
    train(app, 100, objectives=["vae", "beta-vae"])
    app.switch_page("views/compare.py").run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table.index) == ["vae (training here)", "beta-vae (training here)"]  # runs of this session
    assert {"−ELBO", "IWAE NLL", "KL", "AU", "MI", "probe accuracy", "reliance gap", "verdict"} <= set(table.columns)
    assert (table["IWAE NLL"] <= table["−ELBO"] + 1e-6).all()  # IWAE_k is the tighter bound
    assert app.get("download_button")


def test_gallery_opens_a_checkpoint_in_explore(app, tmp_path, digits):
    t = Trainer(small_config(), digits)
    t.step(5)
    t.save(tmp_path / "demo")
    app.switch_page("views/gallery.py").run()
    assert not app.exception and not app.error and app.get("image")
    app.button(key="open-Explore-file: demo").click().run()
    assert not app.exception
    assert app.selectbox(key="source").value == "file: demo" and pad(app)["dims"]


def test_a_lesson_sets_the_controls_and_its_link_opens_it(app):
    app.sidebar.selectbox(key="lesson").set_value("Fix it with KL annealing or free bits").run()
    assert app.sidebar.multiselect(key="objectives").value == ["beta-vae", "kl-annealing", "free-bits"]
    assert app.sidebar.number_input(key="knob-free-bits-beta").value == 8.0
    assert app.sidebar.selectbox(key="knob-kl-annealing-schedule").value == "linear"
    assert "Lesson: Fix it" in app.info[0].value
    assert app.query_params["lesson"] == "Fix it with KL annealing or free bits"
    shared = AppTest.from_file(APP, default_timeout=60)
    shared.query_params["lesson"] = "IWAE tightens the bound"
    shared.run()
    assert shared.sidebar.multiselect(key="objectives").value == ["vae", "iwae"]


@pytest.mark.slow
def test_presentation_mode_and_slider_values_live_in_the_url(app):
    app.sidebar.toggle(key="present").set_value(True).run()
    assert app.query_params["present"] == "1"
    run = train(app, 100)["vae"]
    app.switch_page("views/explore.py").run()
    release(app, run.run_id, [0.0, 0.5] + [0.0] * 6)
    link = app.query_params["z"]
    assert link.split(",")[1] == "0.50"
    shared = AppTest.from_file(APP, default_timeout=60)
    # The same run, opened from the link: it carries the session's token.
    for key, value in {"z": link, "present": "1", "session": app.query_params["session"]}.items():
        shared.query_params[key] = value
    shared.run()
    shared.switch_page("views/explore.py").run()
    assert pad(shared)["code"][1] == pytest.approx(0.5)


def test_long_curves_are_thinned_but_keep_the_latest_point():
    history = [{"step": i + 1, "loss": float(i)} for i in range(10_000)]
    steps, values = plots.smoothed(history, "loss", smooth=1, points=400)
    assert len(steps) <= 400 and steps[-1] == 10_000 and values[-1] == 9_999
    assert list(np.diff(steps)) == [25] * (len(steps) - 1)


def test_the_setup_survives_a_visit_to_another_page(app):
    app.sidebar.selectbox(key="lesson").set_value("Discrete latents").run()
    app.switch_page("views/gallery.py").run()
    app.switch_page("views/train.py").run()
    assert app.sidebar.selectbox(key="lesson").value == "Discrete latents"
    assert app.sidebar.multiselect(key="objectives").value == ["discrete-is", "reinforce-loo", "gumbel-softmax"]
    assert app.sidebar.selectbox(key="dataset").value == "mnist"


SHIPPED_DIR = ROOT / "checkpoints"


def ship(folder, *names):
    """Copy shipped checkpoints into the app's checkpoint folder."""
    for name in names:
        for ext in (".json", ".safetensors"):
            shutil.copy(SHIPPED_DIR / f"{name}{ext}", folder / f"{name}{ext}")


@needs_shared
def test_first_screen_shows_the_shipped_vae_as_a_recorded_run(app, tmp_path):
    ship(tmp_path, "mnist-vae")
    app.run()
    assert not app.exception and not app.error
    assert any("A shipped model" in m.value for m in app.markdown)
    ck = checkpoint.load(tmp_path / "mnist-vae")
    assert any(f"step {ck.step:,} · epoch 5.0 " in m.value and "recorded" in m.value for m in app.markdown)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["active units"] == f"{ck.live[-1]['au']} / 16"
    assert len(app.get("vega_lite_chart")) == 3 and len(app.get("image")) == 2
    assert not app.get("button") or all("Pause" not in b.label for b in app.button)  # nothing to control


@needs_shared
def test_a_lesson_shows_its_recorded_runs_at_once(app, tmp_path):
    ship(tmp_path, "mnist-vae", "mnist-beta8")
    app.sidebar.selectbox(key="lesson").set_value("Induce collapse: β=8").run()
    assert not app.exception and not app.error
    shown = [m.value for m in app.markdown if "· recorded" in m.value]
    assert len(shown) == 2 and "mnist-vae" in shown[0] and "mnist-beta8" in shown[1]
    commands = [c.value for c in app.caption if " train --dataset" in c.value]  # as the sidecar recorded it
    assert len(commands) == 2 and "--beta 8" in commands[1]
    assert len(app.get("vega_lite_chart")) == 5  # the race's losses, then a heatmap and AU/MI for each


@needs_shared
def test_compare_reads_recorded_diagnostics_and_measures_the_rest(app, tmp_path, digits):
    ship(tmp_path, "mnist-vae")
    sidecar = json.loads((tmp_path / "mnist-vae.json").read_text())
    diagnostics = sidecar["diagnostics"]
    diagnostics["results"]["active-units"]["count"] = 15 if diagnostics["results"]["active-units"]["count"] != 15 else 14
    checkpoint.annotate(tmp_path / "mnist-vae", diagnostics=diagnostics)  # so we can tell where the number came from
    t = Trainer(small_config(), digits)
    t.step(30)
    t.save(tmp_path / "digits-vae")
    app.switch_page("views/compare.py").run()
    app.multiselect(key="compare").set_value(["file: digits-vae", "file: mnist-vae"]).run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert table.loc["mnist-vae", "AU"] == diagnostics["results"]["active-units"]["count"]
    assert table.loc["mnist-vae", "measured"] == "when saved"
    assert table.loc["digits-vae", "measured"] == "now"


def test_without_mnist_or_network_the_first_screen_uses_the_subset_and_says_so(tmp_path, monkeypatch):
    from core import data as datasets
    from dashboard.state import load_data
    try:
        at = offline_app(tmp_path, monkeypatch, "mnist-vae").run()
        assert not at.exception and not at.error
        assert any("5,000-digit subset" in w.value for w in at.warning)
        assert any("A shipped model" in m.value for m in at.markdown) and len(at.get("image")) == 2
        # the epoch counts the data it was trained on, not the subset here
        assert any("epoch 5.0 " in m.value and "recorded" in m.value for m in at.markdown)
    finally:
        datasets._load_raw.cache_clear()
        load_data.clear()


# ---------------------------------------------------------------- one model, one truth on the pages

@pytest.mark.parametrize("objective", ["iaf", "householder"])
@pytest.mark.slow
def test_compare_shows_a_live_flow_run_as_its_saved_copy(app, tmp_path, objective):
    """The live run's numbers on Compare come from its flow (whose weights cross the process boundary),
    and equal those of the same run saved and loaded."""
    from core.report import COMPARE, compare_row, run_all
    run = train(app, 100, objectives=[objective])[objective]
    app.switch_page("views/compare.py").run()
    assert not app.exception and not app.error
    row = app.dataframe[0].value.loc[f"{objective} (training here)"]
    numbers = ["−ELBO", "IWAE NLL", "AU", "MI", "probe accuracy", "reliance gap"]
    assert all(np.isfinite(float(row[c])) for c in numbers)
    saved = compare_row(run_all(checkpoint.load(run.save(tmp_path / "copy")), run.data, COMPARE))
    assert [float(row[c]) for c in numbers] == pytest.approx([saved[c] for c in numbers], abs=1e-9)
    assert row["KL"] == f"{saved['KL']:.2f}" + ("" if saved["KL exact"] else " (est.)")


@pytest.mark.slow
def test_a_restarted_run_with_another_latent_size_is_shown_everywhere(app):
    first = train(app, 60)["vae"]
    for page in ("views/compare.py", "views/latent_map.py", "views/explore.py"):
        app.switch_page(page).run()  # fill every page's caches with the first run
    app.switch_page("views/train.py").run()
    app.sidebar.slider(key="latent").set_value(4)
    second = train(app, 60)["vae"]
    assert second.run_id != first.run_id and second.latent_dim == 4
    app.switch_page("views/compare.py").run()
    assert not app.exception and not app.error
    verdict = app.dataframe[0].value.loc["vae (training here)", "verdict"]
    assert sum(int(p.split()[0]) for p in verdict.split(" / ")) == 4  # four dimensions: the new run
    app.switch_page("views/latent_map.py").run()
    assert not app.exception and not app.error
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    assert len(pad(app)["dims"]) == 4 and pad(app)["key"].startswith(f"pad-0@{second.run_id}")


@needs_shared
def test_encode_it_on_one_model_then_pick_another(app, tmp_path):
    ship(tmp_path, "mnist-vae-z2", "mnist-vae")
    small, large = (checkpoint.load(tmp_path / n) for n in ("mnist-vae-z2", "mnist-vae"))
    app.switch_page("views/explore.py").run()
    app.selectbox(key="source").set_value("file: mnist-vae-z2").run()
    app.number_input(key="image").set_value(3)
    app.button[0].click().run()  # "Encode it"
    code = app.session_state[f"start@{small.ref.id}"]
    assert pad(app)["code"] == pytest.approx(code, abs=1e-6)
    app.selectbox(key="source").set_value("file: mnist-vae").run()
    assert not app.exception and not app.error
    data = pad(app)
    assert len(data["dims"]) == 16 and data["key"].startswith(f"pad-0@{large.ref.id}")
    mnist = datasets.load(large.config.data)
    # the new model's own code of a test image (the field's, 3; AppTest hands a fragment's widget its
    # default on a full rerun, 0), not the other model's code
    own = [[round(v, 2) for v in explore.encode_mean(large, mnist.test_x[i], mnist.test_y[i])] for i in (0, 3)]
    assert data["code"] in own


def offline_app(tmp_path, monkeypatch, *names):
    """The app with only these shipped checkpoints, no datasets on disk and no network."""
    from core import data as datasets
    from dashboard.state import load_data
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    ship(folder, *names)
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(folder))
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "TORCHVISION_ROOT", tmp_path / "no-cache")
    datasets._load_raw.cache_clear()
    load_data.clear()
    return AppTest.from_file(APP, default_timeout=60)


def test_offline_the_gallery_shows_prior_samples_of_a_model_whose_dataset_is_absent(tmp_path, monkeypatch):
    from core import data as datasets
    try:
        at = offline_app(tmp_path, monkeypatch, "fashion-vae").run()
        at.switch_page("views/gallery.py").run()
        assert not at.exception and not at.error
        assert len(at.get("image")) == 1  # the card's prior samples
        assert any("is not here" in c.value for c in at.caption)
        at.button(key="open-Explore-file: fashion-vae").click().run()
        assert not at.exception and not at.error
        assert any("fashion" in w.value.lower() for w in at.warning)  # which views need the data
        assert len(pad(at)["dims"]) == 16
    finally:
        datasets._load_raw.cache_clear()


@pytest.mark.slow
def test_a_crashed_training_process_is_a_message_on_the_page(app):
    from core.control import RunState
    app.sidebar.number_input(key="steps").set_value(100_000)
    app.sidebar.button[0].click().run()
    t = wait_for_run(app, "vae")
    try:
        deadline = time.monotonic() + 60
        while t.step_count < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        t.inner._process.kill()  # as the kernel's out-of-memory killer would
        deadline = time.monotonic() + 60
        while t.state != RunState.FAILED and time.monotonic() < deadline:  # and nothing was saved yet
            time.sleep(0.05)
        assert t.state == RunState.FAILED, t.state
        app.run()
        assert not app.exception
        assert any("ended unexpectedly" in e.value for e in app.error)
        for page in ("views/explore.py", "views/compare.py"):
            app.switch_page(page).run()
            assert not app.exception and any("ended" in e.value for e in app.error)
    finally:
        t.stop()


def test_a_branch_is_drawn_from_where_it_left_its_parent():
    parent = [{"step": i, "loss": 100.0 - i} for i in range(1, 101)]
    branch = parent[:60] + [{"step": i, "loss": 50.0} for i in range(61, 101)]
    fig = plots.race_curves({"parent": parent, "branch": branch}, smooth=1, branched={"branch": 60})
    lines = {t.name: t for t in fig.data}
    assert list(lines["parent"].x) == list(range(1, 101))
    assert list(lines["branch"].x) == list(range(61, 101)) and set(lines["branch"].y) == {50.0}
    assert [s.x0 for s in fig.layout.shapes] == [60]  # the mark where it branches


def test_compare_overlays_a_branch_and_names_its_parent(app, tmp_path, digits):
    parent = Trainer(small_config(), digits, live_every=0)
    parent.step(30)
    parent.save(tmp_path / "parent", resumable=True)
    branch = Trainer.branch(tmp_path / "parent", digits, settings={"beta": 4.0})
    branch.step(20)
    branch.save(tmp_path / "branch")
    app.switch_page("views/compare.py").run()
    app.multiselect(key="compare").set_value(["file: parent", "file: branch"]).run()
    assert not app.exception
    assert any("**branch** branched from parent at step 30" in c.value for c in app.caption)  # named without "file: "
    race = app.get("plotly_chart")[-1]
    assert '"x0":30' in race.proto.spec.replace(" ", "")


@pytest.mark.slow
def test_a_finished_run_trains_further_or_branches_from_the_train_page(app):
    train(app, 60)
    app.number_input(key="go-more:vae").set_value(20)
    app.button(key="go-further:vae").click().run()
    assert not app.exception and not app.error
    session_runs(app)["vae"].join(timeout=120)
    app.run()
    assert session_runs(app)["vae"].step_count == 80
    app.number_input(key="go-more:vae").set_value(20)  # the widget was not drawn while the run trained
    app.number_input(key="go-beta:vae").set_value(4.0)
    app.button(key="go-branch:vae").click().run()
    branch = session_runs(app)["vae-b80"]
    branch.join(timeout=120)
    app.run()
    assert not app.exception
    assert branch.step_count == 100 and branch.snapshot().objective.beta == 4.0
    assert branch.snapshot().meta["parent"]["step"] == 80
    assert sum("step 100" in m.value for m in app.markdown) == 1 and sum("step 80" in m.value for m in app.markdown) == 1


SHIPPED_SWEEP = ROOT / "checkpoints" / "sweeps" / "digits-collapse"


def test_the_phase_diagram_averages_seeds_and_keeps_each_cells_trials():
    from core import sweep
    rows = [{"trial": f"t{i}", "status": "done", "objective": o, "beta": b, "latent": z, "seed": s, "AU": au}
            for i, (o, b, z, s, au) in enumerate([("a", "1", "2", "0", "2"), ("a", "1", "2", "1", "1"),
                                                  ("a", "4", "2", "0", "0"), ("a", "4", "2", "1", ""),
                                                  ("b", "1", "8", "0", "7")])]
    rows.append({"trial": "t9", "status": "failed", "objective": "a", "beta": "1", "latent": "2", "seed": "2", "AU": ""})
    a, b = sweep.phase_cells(rows, "AU")
    assert (a.x, a.y, b.x, b.y) == ([1.0, 4.0], [2.0], [1.0], [8.0])
    assert a.mean == [[1.5, 0.0]] and a.n == [[2, 1]] and a.sd[0][0] == pytest.approx(0.5 ** 0.5)
    assert a.trials == [[["t0", "t1", "t9"], ["t2", "t3"]]]
    fig = plots.phase_diagram([a, b], "AU")
    assert [t.type for t in fig.data] == ["heatmap", "scatter", "heatmap", "scatter"]
    assert list(fig.data[0].text[0]) == ["1.5 ± 0.71", "0"]
    # the clickable markers: one per cell, carrying the cell's trials
    assert list(zip(fig.data[1].x, fig.data[1].y, fig.data[1].customdata)) == [("1", "2", "t0,t1,t9"), ("4", "2", "t2,t3")]


def test_the_phase_diagram_runs_along_the_sweeps_own_grid():
    """digits-collapse's grid is beta x latent; a decoder-strength sweep's is the PixelCNN's layers alone, one
    row of cells an objective (the page once took beta and latent from every sweep, and drew one blank cell)."""
    from core import sweep
    assert sweep.phase_axes(sweep.read_rows(SHIPPED_SWEEP)) == ("beta", "latent")
    rows = [{"trial": f"{o}-{n}", "status": "done", "objective": o, "pixelcnn_layers": n, "step": "10", "KL": kl}
            for o, n, kl in [("vae", "0", "4.3"), ("vae", "8", "0.6"), ("bn-vae", "0", "4.1"), ("bn-vae", "8", "1.2")]]
    x, y = sweep.phase_axes(rows)
    assert (x, y) == ("pixelcnn_layers", "")
    vae, bn = sweep.phase_cells(rows, "KL", x, y)
    assert (vae.x, vae.y, vae.mean, bn.mean) == ([0.0, 8.0], [None], [[4.3, 0.6]], [[4.1, 1.2]])
    fig = plots.phase_diagram([vae, bn], "KL", "PixelCNN layers", "")  # one heatmap, an objective a row
    assert [t.type for t in fig.data] == ["heatmap", "scatter"] and list(fig.data[0].y) == ["vae", "bn-vae"]
    assert [list(r) for r in fig.data[0].z] == [[4.3, 0.6], [4.1, 1.2]]
    assert list(zip(fig.data[1].x, fig.data[1].y, fig.data[1].customdata)) == [
        ("0", "vae", "vae-0"), ("8", "vae", "vae-8"), ("0", "bn-vae", "bn-vae-0"), ("8", "bn-vae", "bn-vae-8")]


def test_the_sweeps_page_shows_the_shipped_sweep_and_opens_a_trial(app, monkeypatch):
    import pandas as pd
    monkeypatch.setenv("VAELAB_SWEEPS", str(SHIPPED_SWEEP.parent))
    app.switch_page("views/sweeps.py").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="sweep").value == "digits-collapse"
    table = app.dataframe[0].value
    assert len(table) == 72 and set(table["status"]) == {"done"}
    # Two views of one sweep: the heatmap's cells are the table's means over seeds.
    fig = json.loads(app.get("plotly_chart")[0].proto.spec)
    heatmaps = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 3
    means = pd.read_csv(SHIPPED_SWEEP / "results.csv").groupby(["objective", "latent", "beta"])["AU"].mean()
    for trace, objective in zip(heatmaps, ["beta-vae", "free-bits", "kl-annealing"]):
        for i, latent in enumerate(trace["y"]):
            for j, beta in enumerate(trace["x"]):
                assert trace["z"][i][j] == pytest.approx(means[(objective, int(latent), int(float(beta)))])
    app.selectbox(key="sweep-metric").set_value("MI").run()
    assert not app.exception
    # The lesson that reads this sweep opens it from the Train page.
    app.switch_page("views/train.py").run()
    app.sidebar.selectbox(key="lesson").set_value("Where does each objective collapse?").run()
    app.button(key="lesson-sweep").click().run()
    assert not app.exception and app.selectbox(key="sweep").value == "digits-collapse"
    # A trial opens on Explore by its link, though the model picker does not list every trial.
    label = "sweep: digits-collapse/beta-vae-beta8-latent8-seed0"
    app.query_params["model"] = label
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="source").value == label
    assert not any(o.startswith("sweep: ") and o != label for o in app.selectbox(key="source").options)


def test_a_running_sweep_says_so_and_shows_its_pending_trials(app, tmp_path):
    import csv
    folder = tmp_path / "sweeps" / "live"
    folder.mkdir(parents=True)
    rows = list(csv.DictReader((SHIPPED_SWEEP / "results.csv").open()))[:6]
    for row in rows[3:]:
        row.update({k: "" for k in row if k not in ("trial", "objective", "beta", "latent", "seed")}, status="pending")
    with (folder / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "progress.json").write_text(json.dumps({"finished": False, "updated": time.time(), "total": 6}))
    app.switch_page("views/sweeps.py").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="sweep").value == "live"
    caption = " ".join(c.value for c in app.caption)
    assert "6 trials, 3 done, 0 failed, 3 to go; **running**" in caption
    fig = json.loads(app.get("plotly_chart")[0].proto.spec)
    cells = [v for row in fig["data"][0]["z"] for v in row]
    assert cells[-1] is None and sum(v is not None for v in cells) == 2  # a pending trial is in no mean
    (folder / "progress.json").write_text(json.dumps({"finished": True, "updated": time.time()}))
    app.run()
    assert "**running**" not in " ".join(c.value for c in app.caption)


def open_in_explore(app, path, config, digits):
    """A 3-dimensional model trained 5 steps, saved at path and opened in Explore: its sliders are decoded on the
    server (no MLP program for the browser) and a picture comes back."""
    t = Trainer(config, digits)
    t.step(5)
    t.save(path)
    app.switch_page("views/explore.py").run()
    app.selectbox(key="source").set_value(f"file: {path.name}").run()
    assert not app.exception and not app.error
    data = pad(app)
    assert len(data["dims"]) == 3 and data["program"] is None and data["image"].startswith("data:image/png")


@pytest.mark.parametrize("model", [ModelConfig(hidden=(32,), latent_dim=3, pixelcnn_layers=2, pixelcnn_channels=8),
                                   ModelConfig(hidden=(32, 16), latent_dim=3, skip_z=True)], ids=["pixelcnn", "skip-z"])
def test_a_strong_or_skip_decoder_opens_in_explore_decoded_on_the_server(app, tmp_path, digits, model):
    """A PixelCNN's sliders show one teacher-forced pass over a test image, and a button draws the picture pixel
    by pixel; z entering every layer is not a plain MLP program either."""
    open_in_explore(app, tmp_path / "strong", small_config(model=model), digits)
    autoregressive = model.pixelcnn_layers > 0
    assert any("p(x_i = 1 | x_<i, z)" in c.value for c in app.caption) == autoregressive
    if autoregressive:
        next(b for b in app.button if b.label.startswith("Draw a picture")).click().run()
        captions = [i.proto.imgs[0].caption for i in app.get("image")]
        assert not app.exception and any(c.startswith("drawn pixel by pixel in") for c in captions)
        assert any(c.endswith(f"; {explore.DRAWN}, each drawn pixel by pixel") for c in captions)  # prior samples
    app.switch_page("views/latent_map.py").run()
    app.selectbox(key="source").set_value("file: strong").run()
    assert not app.exception and not app.error


def test_a_model_with_two_stochastic_layers_opens_in_explore_and_the_latent_map(app, tmp_path, digits):
    """Seed 002's IWAE: the sliders move the top layer, decoded on the server through p(z1|z)."""
    config = small_config(objective="iwae", settings={"k": 3},
                          model=ModelConfig(hidden=(32,), latent_below=6, hidden_above=(16,), latent_dim=3))
    open_in_explore(app, tmp_path / "two-layers", config, digits)
    assert any("the sliders set the top layer z" in c.value for c in app.caption)
    app.switch_page("views/latent_map.py").run()
    app.selectbox(key="source").set_value("file: two-layers").run()
    assert not app.exception and not app.error and app.get("vega_lite_chart")
