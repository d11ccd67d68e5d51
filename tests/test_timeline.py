"""Time travel through a run: the kept steps are the run's own weights at those steps, a checkpoint gives
each back, the maps over time are aligned, and the animations hold one frame per kept step."""
import imageio.v3 as iio
import json
import numpy as np
import pytest
import torch

from core import checkpoint, explore, snapshots, timeline
from core.engine import Trainer
from core.errors import CheckpointError
from tests.conftest import small_config
from tests.test_cli import inline


def simulate(total: int, most: int) -> list[int]:
    kept, every = [], snapshots.EVERY
    for step in range(total + 1):
        if snapshots.due(step, every):
            kept, every = snapshots.thin(kept + [step], every, most)
    return kept


def test_the_schedule_is_dense_early_sparse_later_and_within_its_count():
    # the shipped MNIST runs: 2,345 steps; 16 MB of 0.83 MB snapshots is 19 of them
    assert simulate(2345, 19) == [0, 10, 20, 50, 100, 200, 400, 500, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2200]
    assert simulate(2345, 4) == [0, 200, 500, 1600]  # a small budget spends itself on the span
    for total, most in [(100_000, 12), (7, 3), (5000, 1), (5000, 0)]:
        kept = simulate(total, most)
        assert len(kept) <= most and kept == sorted(set(kept))
        assert not most or kept[0] == 0
    assert snapshots.limit(16, 832_680) == 20 and snapshots.limit(0, 832_680) == 0


# 7 kept steps of the digits model's 18 KB (float16): a budget that thins a 600-step run
BUDGET = 0.125


def within_float16(kept: torch.Tensor, exact: torch.Tensor) -> bool:
    """A float32 tensor rounded to float16 and back: within half a unit in the last place, a relative 2**-11
    (or 2**-25 below float16's normal range, where its steps are 2**-24 apart)."""
    return kept.dtype == exact.dtype == torch.float32 and bool(
        ((kept - exact).abs() <= exact.abs() * 2**-11 + 2**-25).all())


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits):
    """A 260-step run on digits, kept within a budget that thins it, saved resumable."""
    trainer = Trainer(small_config(), digits, snapshot_mb=BUDGET)
    trainer.step(260)
    path = trainer.save(tmp_path_factory.mktemp("run") / "r", resumable=True)
    return trainer, path


def test_each_kept_step_decodes_as_the_run_did_at_that_step(run, digits):
    """The model a checkpoint gives back at step s holds the run's own float32 weights at step s rounded to
    float16 (exactly the tensors the run kept), widened back to float32, and decodes nearly as they did; its
    last step is its own weights, bit for bit."""
    trainer, path = run
    kept = checkpoint.load_steps(path)
    steps = [b.step for b in kept]
    assert steps == [0, 10, 20, 50, 100, 200, 260]  # the early steps, then its own last
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    again = Trainer(small_config(), digits, snapshot_mb=0)
    for bundle in kept:
        again.step(bundle.step - again.step_count) if bundle.step > again.step_count else None
        exact, loaded = again.model.state_dict(), bundle.network.state_dict()
        assert loaded.keys() == exact.keys() and all(within_float16(loaded[k], exact[k]) for k in exact), bundle.step
        images, exact_images = explore.decode(bundle.network, z), explore.decode(again.snapshot().network, z)
        if bundle.step == 260:
            assert torch.equal(images, exact_images) and all(torch.equal(loaded[k], exact[k]) for k in exact)
        else:
            assert all(torch.equal(loaded[k], trainer.kept.weights[bundle.step][f"model.{k}"].float()) for k in exact)
            assert 0 < (images - exact_images).abs().max() < 1e-3, bundle.step  # rounded, and invisibly so
        one = checkpoint.load(path, step=bundle.step)
        assert torch.equal(explore.decode(one.network, z), explore.decode(bundle.network, z))
        assert one.ref == bundle.ref and one.ref.version == bundle.step
        assert all(r["step"] <= bundle.step for r in one.history + one.live) and len(one.history) == bundle.step
        assert (bundle.step == 260) == ("training" in one.meta)  # an earlier step has no numbers of the last


def test_a_resumed_run_keeps_its_steps_and_goes_on_keeping_them_as_the_whole_run_would(run, digits):
    trainer, path = run
    whole = Trainer(small_config(), digits, snapshot_mb=BUDGET)
    whole.step(600)
    resumed = Trainer.load(path, digits)
    resumed.step(340)
    assert sorted(resumed.kept.weights) == sorted(whole.kept.weights)
    assert all(torch.equal(resumed.kept.weights[s][k], whole.kept.weights[s][k]) for s in whole.kept.weights for k in whole.kept.weights[s])


def test_a_step_that_was_not_kept_or_a_forged_one_is_refused_by_name(run, tmp_path):
    _, path = run
    with pytest.raises(CheckpointError, match="no weights kept at step 7; it keeps steps 0,"):
        checkpoint.load(path, step=7)
    meta = json.loads(path.read_text())
    forged = tmp_path / "f.json"
    (tmp_path / "f.safetensors").write_bytes(path.with_suffix(".safetensors").read_bytes())
    forged.write_text(json.dumps(meta | {"snapshots": meta["snapshots"] | {"steps": [0, 5]}}))
    with pytest.raises(CheckpointError, match="no tensors for step 5"):
        checkpoint.load(forged, step=5)
    forged.write_text(json.dumps(meta | {"snapshots": {"steps": ["0"]}}))
    with pytest.raises(CheckpointError, match="snapshots.steps"):
        checkpoint.load(forged)


@pytest.fixture(scope="module")
def bundles(run):
    return checkpoint.load_steps(run[1])


@pytest.mark.parametrize("method", ["pca", pytest.param("tsne", marks=pytest.mark.slow)])
def test_aligned_maps_move_less_from_step_to_step_than_unaligned_ones(bundles, digits, method):
    """The same test images at every step; aligned, they move less between frames (relative to the map's
    spread) than the maps the method draws on its own, and never as far as the map is wide."""
    n = 200 if method == "tsne" else 1000
    aligned = timeline.maps_over_time(bundles, digits, method, n)
    alone = timeline.maps_over_time(bundles, digits, method, n, align=False)
    assert all(m.index == aligned[0].index for m in aligned + alone)
    moved, moved_alone = timeline.displacement(aligned), timeline.displacement(alone)
    assert sum(moved) < 0.8 * sum(moved_alone), (moved, moved_alone)
    # never as far as the map is wide; t-SNE's first pair (from the random step 0) moves 0.8 to 1.06 of the
    # spread over seeds 0 to 3, whether the kept weights are float32 or float16
    assert max(moved) < 1.25, moved
    if method == "pca":  # a turn and a shift only: each map keeps its own distances
        for a, b in zip(aligned, alone):
            da, db = (np.linalg.norm(np.asarray(m.coords)[:50, None] - np.asarray(m.coords)[None, :50], axis=-1) for m in (a, b))
            assert np.allclose(da, db, atol=1e-6)


@pytest.mark.parametrize("view", timeline.VIEWS)
def test_an_animation_has_one_frame_per_kept_step_and_opens_with_imageio(bundles, digits, view, tmp_path):
    frames = timeline.frames(view, bundles, digits, title="digits")
    assert len(frames) == len(bundles) and len({f.shape for f in frames}) == 1
    gif = iio.imread(timeline.write(tmp_path / "a.gif", frames), index=None)
    assert gif.shape == (len(bundles), *frames[0].shape)
    assert np.array_equal(gif[-1], frames[-1]) or view in ("map", "heatmap")  # GIF's 256 colours
    if view == "samples":
        mp4 = iio.imread(timeline.write(tmp_path / "a.mp4", frames), index=None, plugin="FFMPEG")
        assert len(mp4) == len(bundles)
        # the pages' downloads: the same files as bytes
        assert timeline.encode(frames, ".gif") == (tmp_path / "a.gif").read_bytes()
        assert np.array_equal(iio.imread(timeline.encode(frames[2:3], ".png")), frames[2])


def test_the_heatmap_frame_marks_its_step_and_fades_what_came_after(bundles):
    live = bundles[-1].live
    early, late = (timeline.heatmap_image(live, s, (960, 540)) for s in (live[0]["step"], live[-1]["step"]))

    def red_columns(picture):  # where the step's line runs down the axes
        return np.flatnonzero((np.abs(picture.astype(int) - (214, 39, 40)).sum(-1) < 40).sum(0) > 200)

    at_early, at_late = red_columns(early), red_columns(late)
    assert len(at_early) and len(at_late) and at_early.max() < at_late.min()
    inside = (slice(60, 470), slice(at_early.max() + 5, at_late.min() - 5))  # the cells between the two lines
    assert early[inside].mean() > late[inside].mean() + 50  # faded towards white, not darkened


def test_animate_on_the_command_line(run, tmp_path, capsys):
    _, path = run
    out = tmp_path / "m.gif"
    r = inline(capsys, "animate", str(path), "--view", "samples", "--out", str(out))
    assert r.returncode == 0 and f"{len(checkpoint.load_steps(path))} frames of samples" in r.stdout
    assert len(iio.imread(out, index=None)) == len(checkpoint.load_steps(path))
    r = inline(capsys, "animate", str(path), "--view", "heatmap", "--step", "200", "--out", str(tmp_path / "h.png"))
    assert r.returncode == 0 and iio.imread(tmp_path / "h.png").ndim == 3
    r = inline(capsys, "animate", str(path), "--step", "7", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 1 and "no weights kept at step 7" in r.stderr
    r = inline(capsys, "animate", str(path), "--out", str(tmp_path / "x.avi"))
    assert r.returncode == 1 and "as .gif or .mp4" in r.stderr
