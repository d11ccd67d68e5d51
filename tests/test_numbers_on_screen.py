"""The numbers a room reads off the screen: MI with its noise and never a bare negative, round axis ticks,
one colour scale for heatmaps side by side, the fit in one sign convention, a verdict that fits its column,
a grouped Gallery, and slide frames a projector can fill."""
import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from plotly.colors import sample_colorscale

from conftest import ROOT, needs_shared, small_config
from core import checkpoint, pictures, timeline
from core.diagnostics.mutual_information import live_mi
from core.engine import Trainer
from core.evaluate import eval_split
from core.report import compare_row, from_dict, headline
from dashboard import live_charts, plots

SHIPPED = ROOT / "checkpoints"


def ship(folder, *names):
    for name in names:
        for ext in (".json", ".safetensors"):
            shutil.copy(SHIPPED / f"{name}{ext}", folder / f"{name}{ext}")


# ---------------------------------------------------------------- MI and its standard error

@pytest.mark.parametrize("steps", [0, 150])
def test_the_live_mi_standard_error_matches_the_spread_of_repeated_estimates(digits, steps):
    """On the fixed held-out batch, the live estimate changes only with its draws of z: the standard error it
    reports is what 100 estimates with other draws spread by (it also counts the images' spread, so it may
    run a little large, never small). An untrained model has MI near 0, where single estimates fall below 0."""
    trainer = Trainer(small_config(), digits, live_every=50)
    trainer.step(steps)
    if steps:
        assert {"mi", "mi_se", "mi_ceiling"} <= set(trainer.live[-1]) and trainer.live[-1]["mi_se"] > 0
    x, y = eval_split(digits, 500)
    with torch.no_grad():
        q = trainer.snapshot().posterior(x, y)
        rows = []
        for seed in range(100):
            torch.manual_seed(seed)
            rows.append(live_mi(q))
    spread, se = np.std([r["mi_raw"] for r in rows], ddof=1), np.mean([r["mi_se"] for r in rows])
    assert 0.8 * se < spread < 1.1 * se, (spread, se)
    assert all(r["mi"] == max(r["mi_raw"], 0.0) for r in rows)  # the row's MI is clipped at 0, as MI is
    if not steps:
        assert min(r["mi_raw"] for r in rows) < 0  # why the text below never shows one bare


def test_mi_text_never_shows_a_bare_negative_number():
    assert plots.mi_text({"mi": 1.234, "mi_se": 0.051}) == "1.23 ± 0.05"
    assert plots.mi_text({"mi": -0.07, "mi_se": 0.15}) == "≈ 0 (−0.07 ± 0.15)"
    assert plots.mi_text({"mi": -0.07}) == "≈ 0 (−0.07)"  # a row saved before the error existed
    assert plots.mi_text({"mi": -0.001, "mi_se": 0.1}) == "0.00 ± 0.10"
    assert plots.mi_text({"mi": 2.5}) == "2.50" and plots.mi_text({}) == "–"
    for mi in np.linspace(-1, 1, 41):
        text = plots.mi_text({"mi": mi, "mi_se": 0.2})
        assert not text.startswith(("-", "−")) and "-" not in text
    assert "below 0" in plots.MI_HELP and "log B" in plots.MI_HELP


def test_live_metrics_ticks_are_round_and_the_mi_axis_spans_zero_the_bands_and_the_ceiling():
    live = [{"step": s, "au": a, "mi": m, "mi_se": se, "mi_ceiling": 6.2146, "kl_per_dim": [0.1] * 16}
            for s, a, m, se in [(50, 3, -0.52, 0.2), (100, 9, 1.94, 0.15), (150, 14, 3.99, 0.1), (200, 16, 5.99, 0.1)]]
    data, spec = live_charts.metrics_chart(live)
    au = spec["layer"][0]["encoding"]["y"]
    assert au["axis"]["values"] == list(range(0, 17, 2)) and au["scale"]["domain"] == [0, 16]  # whole units, to 16
    band, mi, ceiling = spec["layer"][1]["layer"]
    # one right-hand scale for the band, the estimate and the ceiling, from 0 (Vega's round ticks: nice by default)
    assert ceiling["encoding"]["y"]["scale"]["zero"] and "nice" not in ceiling["encoding"]["y"]["scale"]
    # the band of the estimate below 0 (−0.52 ± 2 · 0.2) is cut at 0, where MI ends
    assert data.mi_low.min() == pytest.approx(0.0) and data.mi_high.max() == pytest.approx(6.19)
    assert data.mi_high[0] == 0 and data.mi[0] == -0.52  # its whole band is below 0; a row saved before the clip
    assert list(data.mi_text)[0] == plots.mi_text(live[0]) and "±" in data.mi_text[0]
    # rows saved before the standard error existed draw as they did, with no band
    old = [{k: v for k, v in r.items() if k != "mi_se"} for r in live]
    assert live_charts.metrics_data(old).mi_low.isna().all()
    for dims, ticks in [(2, [0, 1, 2]), (32, list(range(0, 33, 4))), (13, [0, 2, 4, 6, 8, 10, 13])]:
        assert plots.unit_ticks(dims) == ticks


# ---------------------------------------------------------------- one colour scale for heatmaps side by side

def test_heatmaps_side_by_side_share_one_colour_scale_in_the_chart_and_in_pixels():
    strong = [{"step": 50, "kl_per_dim": [4.0, 1.0]}, {"step": 100, "kl_per_dim": [2.0, 0.0]}]
    weak = [{"step": 50, "kl_per_dim": [1.0, 0.5]}, {"step": 100, "kl_per_dim": [2.0, 0.25]}]
    top = max(pictures.kl_top(strong), pictures.kl_top(weak))
    assert top == 4.0
    for live in (strong, weak):
        colour = live_charts.heatmap_chart(live, top=top)[1]["layer"][0]["encoding"]["color"]["scale"]
        assert colour["domain"] == [0, top] and colour["scheme"] == "viridis"
        image = pictures.kl_heatmap_image(live, height=20, width=20, top=top)
        for (d, r), value in np.ndenumerate(pictures.kl_values(live)):
            pixel = image[d * 10 + 5, r * 10 + 5]
            plotly_rgb = [int(c) for c in sample_colorscale("Viridis", [value / top])[0][4:-1].split(",")]
            assert np.abs(pixel.astype(int) - plotly_rgb).max() <= 1, (value, pixel, plotly_rgb)
    # z0 at step 50 of the strong run is the top; the weak run's 2.0 is half way, not yellow
    assert tuple(pictures.kl_heatmap_image(strong, 20, 20, top=top)[5, 5]) == (253, 231, 37)
    assert tuple(pictures.kl_heatmap_image(weak, 20, 20, top=top)[5, 15]) != (253, 231, 37)
    assert tuple(pictures.kl_heatmap_image(weak, 20, 20)[5, 15]) == (253, 231, 37)  # its own scale, as before
    assert live_charts.heatmap_chart(weak)[1]["layer"][0]["encoding"]["color"]["scale"]["domain"] == [0, 2.0]


# ---------------------------------------------------------------- Compare: the fit in one sign, a verdict that fits

def shipped_names():
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def test_compare_rows_of_every_shipped_checkpoint_read_the_same_way():
    """−ELBO ≥ IWAE NLL for all 24 (both positive nats where the pixels are discrete; a density's can be
    negative: Frey faces), and a verdict short enough for its column that still counts every dimension."""
    for name in shipped_names():
        meta = json.loads((SHIPPED / f"{name}.json").read_text())
        results = from_dict(meta["diagnostics"]["results"])
        row, record = compare_row(results), headline(results)
        assert "ELBO" not in row and row["−ELBO"] == -record["ELBO"] and row["IWAE NLL"] == record["IWAE NLL"]
        assert row["−ELBO"] >= row["IWAE NLL"], name
        if meta["config"]["data"]["name"] != "frey":
            assert row["IWAE NLL"] > 0, name
        assert len(row["verdict"]) <= len("16 active / 16 unused / 16 collapsed") < len(record["verdict"])
        counts = [int(part.split()[0]) for part in row["verdict"].split(" / ")]
        assert sum(counts) == meta["config"]["model"]["latent_dim"] and 0 not in counts, name


@needs_shared
def test_the_compare_page_shows_minus_elbo_beside_the_iwae_nll_for_the_shipped_vae(app, tmp_path):
    ship(tmp_path, "mnist-vae")
    app.switch_page("views/compare.py").run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    row = table.loc["mnist-vae"]
    assert "ELBO" not in table.columns and row["−ELBO"] >= row["IWAE NLL"] > 0
    assert row["verdict"] == "16 active"
    config = json.loads(app.dataframe[0].proto.columns)
    assert "−ELBO ≥ IWAE NLL ≥ −log p(x)" in config["−ELBO"]["help"]  # the help says how they relate
    assert "unused" in config["verdict"]["help"]


# ---------------------------------------------------------------- Gallery: grouped, described, buttons that fit

def test_the_gallery_groups_its_cards_and_says_what_each_shows(app, tmp_path, digits):
    ship(tmp_path, "mnist-vae", "mnist-beta8", "mnist-bernoulli")
    Trainer(small_config(), digits).save(tmp_path / "my-digits")  # a file the table does not know
    app.switch_page("views/gallery.py").run()
    assert not app.exception and not app.error
    assert [h.value for h in app.subheader] == ["The plain VAE", "Posterior collapse and its fixes",
                                                "Discrete latents"]
    names = [m.value for m in app.markdown if m.value.startswith("**")]
    assert names == ["**mnist-vae**", "**my-digits**", "**mnist-beta8**", "**mnist-bernoulli**"]
    captions = " ".join(c.value for c in app.caption)
    assert "file:" not in " ".join(names) + captions
    assert "a quarter of the dimensions collapse" in captions and "*Induce collapse: β=8*" in captions
    assert "vae, after Kingma & Welling" in captions  # the rule's line for a file the table does not know
    labels = {b.label for b in app.button if b.key.startswith("open-")}
    assert labels == {"Explore", "Map", "Compare"}  # "Latent map" was cut to "Latent…" at three cards a row
    app.button(key="open-Latent map-file: mnist-beta8").click().run()
    assert not app.exception


# ---------------------------------------------------------------- slide frames

@pytest.fixture(scope="module")
def kept(tmp_path_factory, digits):
    trainer = Trainer(small_config(), digits, snapshot_mb=0.125, live_every=20)
    trainer.step(120)
    return checkpoint.load_steps(trainer.save(tmp_path_factory.mktemp("run") / "r"))


def colour_bar(frame: np.ndarray) -> np.ndarray:
    """Down the column of the frame's right quarter that passes through the most colours of the Viridis scale
    (a heatmap's column has a few, one per dimension), each pixel's position on the scale (0..255)."""
    from scipy.spatial import cKDTree
    right = frame[:, frame.shape[1] * 3 // 4:].astype(float)
    distance, position = cKDTree(pictures.viridis(np.linspace(0, 1, 256)) * 255).query(right.reshape(-1, 3))
    distance, position = distance.reshape(right.shape[:2]), position.reshape(right.shape[:2])
    columns = [position[distance[:, x] < 3.5, x] for x in range(right.shape[1])]
    return max(columns, key=lambda c: len(set(c)))


def test_a_slide_frame_is_full_hd_and_the_heatmap_has_axes_and_a_colour_bar(kept, digits):
    heat = timeline.frames("heatmap", kept[-2:], digits, title="digits-vae")
    samples = timeline.frames("samples", kept[-1:], digits, title="digits-vae")
    for frame in heat + samples:
        assert frame.shape == (1080, 1920, 3)
    assert iio.imread(timeline.encode(heat[-1:], ".png")).shape[1] == 1920
    scale = colour_bar(heat[-1])
    assert len(scale) > 500 and len(set(scale)) > 200  # a bar most of the frame's height, through the scale
    assert (np.diff(scale) <= 0).all() and scale[0] >= 250 and scale[-1] <= 5  # top colour down to 0, in order
    words = timeline.caption("heatmap", kept[-1], "digits-vae").split(" · ")
    assert words == ["digits-vae", "KL per dimension on held-out images", "step 120", f"epoch {kept[-1].epoch:.1f}"]
