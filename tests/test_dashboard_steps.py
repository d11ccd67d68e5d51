"""The step slider: every page shows the model at the kept step it names, the step travels in the URL and
from page to page, and the figures mark it."""
import numpy as np
import pytest
import torch

from core import checkpoint, explore, timeline
from core import data as datasets
from core.engine import Trainer
from dashboard import live_charts, plots
from tests.conftest import needs_shared, session_runs, small_config, train
from tests.test_dashboard import ship

pytestmark = pytest.mark.slow  # the pages' runs train in processes, and the latent map plays a run


@pytest.fixture
def kept(tmp_path, digits):
    """A digits run in the app's checkpoint folder, its weights kept at steps 0, 10, 20, 50, 100 and 120."""
    t = Trainer(small_config(), digits)
    t.step(120)
    return t.save(tmp_path / "kept")


def test_explore_decodes_with_the_weights_of_the_step_the_link_names(app, kept):
    app.query_params["model"] = "file: kept"
    app.query_params["step"] = "50"
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    slider = app.select_slider(key="step-slider")
    assert slider.value == 50 and slider.options == ["0", "10", "20", "50", "100", "120"]
    code = [float(v) for v in app.query_params["z"].split(",")]
    at_50, last = checkpoint.load(kept, step=50), checkpoint.load(kept)
    shown = app.session_state["decoded"]
    assert torch.equal(shown, explore.decode(at_50.network, code).clamp(0, 1))
    assert not torch.equal(shown, explore.decode(last.network, code).clamp(0, 1))  # so the step mattered

    slider.set_value(100).run()  # the URL follows the slider, and the latest step leaves it
    assert app.query_params["step"] == "100" and torch.equal(
        app.session_state["decoded"], explore.decode(checkpoint.load(kept, step=100).network, code).clamp(0, 1))
    app.select_slider(key="step-slider").set_value(120).run()
    assert "step" not in app.query_params


def test_the_step_goes_from_page_to_page_and_an_unkept_one_to_the_nearest(app, kept):
    app.query_params["model"] = "file: kept"
    app.query_params["step"] = "55"  # not kept: the nearest, 50
    app.switch_page("views/latent_map.py").run()
    assert not app.exception and not app.error
    assert app.select_slider(key="step-slider").value == 50 and app.query_params["step"] == "50"
    app.select_slider(key="step-slider").set_value(20).run()
    app.switch_page("views/explore.py").run()
    assert app.select_slider(key="step-slider").value == 20
    app.switch_page("views/compare.py").run()
    app.multiselect(key="compare").set_value(["file: kept"]).run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert table.loc["kept", "step"] == 20 and table.loc["kept", "measured"] == "now"


def test_the_latent_map_plays_the_run_aligned(app, kept, digits):
    app.query_params["model"] = "file: kept"
    app.switch_page("views/latent_map.py").run()
    assert not app.exception and not app.error
    assert [b.label for b in app.get("download_button")] == ["Download as GIF", "Download as MP4"]
    figure = plots.map_animation(timeline.maps_over_time(checkpoint.load_steps(kept), digits, n=200),
                                 [0, 10, 20, 50, 100, 120], list(range(200)))
    assert [f.name for f in figure.frames] == ["0", "10", "20", "50", "100", "120"]
    assert [b.label for b in figure.layout.updatemenus[0].buttons] == ["Play", "Pause"]
    assert figure.layout.xaxis.range is not None  # fixed axes: the points move, not the frame


def test_every_curve_marks_the_step():
    history = [{"step": s, "loss": 100.0 / s, "recon": 90.0, "kl": 10.0} for s in range(1, 301)]
    live = [{"step": s, "kl_per_dim": [1.0, 0.5], "au": 2, "mi": 1.0, "mi_ceiling": 6.2} for s in (50, 100, 150)]
    figure = plots.race_curves({"a": history}, marker=100)  # Compare's
    assert [(s.x0, s.x1) for s in figure.layout.shapes] == [(100, 100)]
    assert figure.layout.annotations[-1].text == "step 100"
    # the Train page's: the step travels in the data, so the chart stays and only its data changes
    charts = [live_charts.loss_chart, live_charts.heatmap_chart, live_charts.metrics_chart,
              lambda rows, marker=None: live_charts.race_chart({"a": history}, marker=marker)]
    for chart, rows in zip(charts, [history, live, live, history]):
        (data, spec), (still, same) = chart(rows, marker=100), chart(rows)
        assert (data.marker == 100).all() and still.marker.isna().all() and spec == same
        assert live_charts.MARKER in spec["layer"]


@needs_shared
def test_the_lesson_scrubs_its_shipped_run(app, tmp_path):
    ship(tmp_path, "mnist-kl-annealing-beta8")
    app.sidebar.selectbox(key="lesson").set_value("Watch a dimension collapse").run()
    assert not app.exception and not app.error
    slider = app.select_slider(key="train-step")
    assert len(slider.options) == 18 and slider.value == 2345
    assert metrics(app)["active units"] == "11 / 16"  # collapsed by the end
    slider.set_value(600).run()
    assert not app.exception
    shown = metrics(app)
    assert shown["active units"] == "16 / 16"
    rows = {r["step"]: r for r in checkpoint.load(tmp_path / "mnist-kl-annealing-beta8").history}
    # −ELBO and the training loss (β · KL, annealed) at the step the slider shows, each named for what it is
    assert np.isclose(float(shown["−ELBO at step 600"]), rows[600]["recon"] + rows[600]["kl"], atol=0.05)
    assert np.isclose(float(shown["training loss at step 600"]), rows[600]["loss"], atol=0.05)
    # past step 1,000 the saved history is thinned: the row is found by its step (an index was past its end)
    app.select_slider(key="train-step").set_value(1400).run()
    assert not app.exception
    assert np.isclose(float(metrics(app)["−ELBO at step 1,400"]), rows[1400]["recon"] + rows[1400]["kl"], atol=0.05)
    assert any("showing step 1,400 of 2,345" in m.value for m in app.markdown)  # the header follows the step


def metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_a_finished_run_of_the_train_page_goes_back_to_its_kept_steps(app):
    """A run trained on the page keeps its steps in its checkpoint under runs/; once it is done, the step
    slider shows its reconstructions at one of them, and Explore opens that step from the same file."""
    train(app, 150)
    slider = app.select_slider(key="train-step")
    assert slider.options == ["0", "10", "20", "50", "100", "150"] and slider.value == 150
    slider.set_value(20).run()
    assert not app.exception and not app.error
    captions = [i.proto.imgs[0].caption for i in app.get("image")]
    assert "test images and their reconstructions at step 20" in captions, captions
    name = app.selectbox[0].key.removeprefix("slide-view-")  # for slides: any view, the run or this step
    assert app.selectbox(key=f"slide-view-{name}").options == ["samples", "reconstructions", "heatmap"]
    assert app.radio(key=f"slide-kind-{name}").options == ["GIF of all 6 kept steps", "MP4 of all 6 kept steps",
                                                           "PNG of step 20"]
    app.radio(key=f"slide-kind-{name}").set_value(".png").run()
    download = next(d for d in app.get("download_button") if d.proto.label == "Download")
    assert not app.exception and download.proto.id.endswith(f"slide-{name}")
    app.select_slider(key="train-step").set_value(50).run()  # the choice stays as the step moves
    assert app.radio(key=f"slide-kind-{name}").value == ".png"
    assert app.radio(key=f"slide-kind-{name}").options[-1] == "PNG of step 50"
    app.select_slider(key="train-step").set_value(20).run()
    run = next(iter(session_runs(app).values()))
    assert checkpoint.load(run.path, step=20).step == 20
    app.switch_page("views/explore.py").run()
    assert not app.exception and app.select_slider(key="step-slider").value == 20


def test_explore_opens_at_a_test_images_code_and_its_link_shows_the_same_picture(app, kept):
    """Not at z = 0 (a grey smudge on most models): at test image 0's posterior mean, as the link keeps it."""
    app.query_params["model"] = "file: kept"
    app.switch_page("views/explore.py").run()
    assert not app.exception and not app.error
    model = checkpoint.load(kept)
    data = datasets.load(model.config.data)
    code = [float(v) for v in app.query_params["z"].split(",")]
    assert code == [round(v, 2) for v in explore.encode_mean(model, data.test_x[0], data.test_y[0])]
    assert any(abs(v) > 0.05 for v in code)
    assert torch.equal(app.session_state["decoded"], explore.decode(model.network, code).clamp(0, 1))
