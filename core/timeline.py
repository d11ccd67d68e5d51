"""A run over time: latent maps that do not jump from one kept step to the next, and frames of any view
(map, prior samples, reconstructions, KL heatmap) for an animation or a picture of one step.

    bundles = checkpoint.load_steps("checkpoints/mnist-kl-annealing-beta8")   # the model at each kept step
    maps = maps_over_time(bundles, data, "pca")                               # the same test images throughout
    write("collapse.gif", frames("map", bundles, data, maps=maps))

A map's axes mean nothing by themselves: PCA may flip a sign between two steps, t-SNE and UMAP may turn
the whole picture. So each step's map is turned onto the one before it (orthogonal Procrustes: a
rotation or reflection and a shift, never a stretch, so distances stay what the method made them), and
t-SNE and UMAP start from the previous step's layout. `displacement` measures what is left: how far the
same points move between frames, relative to the map's spread.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import explore, pictures
from .errors import ConfigError

VIEWS = ("map", "samples", "reconstructions", "heatmap")
FORMATS = (".gif", ".mp4")


def maps_over_time(bundles, data, method: str = "pca", n: int = 1000, seed: int = 0, align: bool = True,
                   perplexity: float = 30.0, neighbors: int = 15, progress=None) -> list[explore.LatentMap]:
    """One latent map per model (a run's kept steps, in order), all of the same n test images. progress:
    called with (done, total) after each map."""
    maps: list[explore.LatentMap] = []
    for i, bundle in enumerate(bundles):
        previous = maps[-1] if maps else None
        init = np.asarray(previous.coords) if align and previous and method in ("tsne", "umap") else None
        m = explore.latent_map(bundle, data, method, n, seed, perplexity, neighbors, init=init)
        if align and previous and method != "raw" and bundle.latent_dim > 2:  # a 2-D code is drawn as it is
            m.coords = procrustes_onto(m.coords, previous.coords)
        maps.append(m)
        if progress:
            progress(i + 1, len(bundles))
    return maps


def procrustes_onto(coords, target) -> list[list[float]]:
    """coords turned and shifted (no scaling) to lie as close as they can to target, point for point."""
    from scipy.linalg import orthogonal_procrustes
    a, b = np.asarray(coords, dtype=float), np.asarray(target, dtype=float)
    rotation, _ = orthogonal_procrustes(a - a.mean(0), b - b.mean(0))
    return ((a - a.mean(0)) @ rotation + b.mean(0)).tolist()


def displacement(maps) -> list[float]:
    """Between each pair of successive maps of the same points: the mean distance a point moves, as a
    fraction of the later map's spread (its root-mean-square distance from the centre)."""
    moves = []
    for before, after in zip(maps, maps[1:]):
        a, b = np.asarray(before.coords), np.asarray(after.coords)
        spread = np.sqrt(((b - b.mean(0)) ** 2).sum(1).mean())
        moves.append(float(np.linalg.norm(b - a, axis=1).mean() / max(spread, 1e-12)))
    return moves


# ------------------------------------------------------------ frames

SLIDE = (1920, 1080)  # every frame: a full-HD slide, wide enough to fill a projector without blurring
BAND = 90             # the caption's band along the top
MARGIN = 40
ROOM = (SLIDE[0] - 2 * MARGIN, SLIDE[1] - BAND - MARGIN)  # what the picture under the caption may fill
VIEW_NAMES = {"map": "latent map of the test images", "samples": "samples from the prior",
              "reconstructions": "test images (top rows) and their reconstructions (bottom rows)",
              "heatmap": "KL per dimension on held-out images"}


def frames(view: str, bundles, data=None, maps=None, title: str = "", n: int = 32,
           top: float | None = None) -> list[np.ndarray]:
    """One picture (H x W x 3 uint8, SLIDE-sized) per model, each captioned with the model's name (title),
    the view and its step. top: the heatmap's colour scale in nats (None: the run's largest KL)."""
    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; choose from: {', '.join(VIEWS)}")
    if view in ("map", "reconstructions") and data is None:
        raise ConfigError(f"the {view} view shows test images, and this model's dataset is not here")
    if view == "map":
        maps = maps if maps is not None else maps_over_time(bundles, data)
        limits = map_limits(maps)
        pictures_ = [map_image(m, limits, data.info.classes, size=ROOM[1]) for m in maps]
    elif view == "samples":
        pictures_ = [pictures.image_grid(_shown(explore.prior_samples(b.network, n), data)) for b in bundles]
    elif view == "reconstructions":
        x, y = data.test_x[:n // 2], data.test_y[:n // 2]
        pictures_ = [pictures.image_grid(data.to_image(torch.cat([x, b.reconstruct(x, y)]))) for b in bundles]
    else:
        # the whole run's rows (an earlier step's sidecar still has them all); each frame marks its step
        live = max((b.meta.get("live") or b.live for b in bundles), key=len)
        if not live:
            raise ConfigError("the heatmap view needs the run's live rows, and it has none (trained with --live-every 0)")
        pictures_ = [heatmap_image(live, b.step, ROOM, top) for b in bundles]
    return [on_slide(p, caption(view, b, title)) for p, b in zip(pictures_, bundles)]


def caption(view: str, bundle, title: str = "") -> str:
    """What a frame says above its picture: "mnist-vae · samples from the prior · step 1,600 · epoch 3.4"."""
    words = [*([title] if title else []), VIEW_NAMES[view], f"step {bundle.step:,}"]
    return " · ".join(words + ([f"epoch {bundle.epoch:.1f}"] if bundle.epoch is not None else []))


def _shown(images, data):
    return data.to_image(images) if data is not None else images.clamp(0, 1)


def on_slide(picture: np.ndarray, caption: str) -> np.ndarray:
    """The picture on a white SLIDE-sized frame under its caption: enlarged by a whole factor while it fits
    (pixels stay sharp blocks), centred."""
    from PIL import Image, ImageDraw, ImageFont
    picture = np.asarray(picture, dtype=np.uint8)
    if picture.ndim == 2 or picture.shape[-1] == 1:
        picture = np.repeat(picture.reshape(*picture.shape[:2], 1), 3, axis=-1)
    h, w = picture.shape[:2]
    scale = max(1, min(ROOM[0] // w, ROOM[1] // h))
    picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)[:ROOM[1], :ROOM[0]]
    canvas = Image.new("RGB", SLIDE, "white")
    h, w = picture.shape[:2]
    canvas.paste(Image.fromarray(picture), ((SLIDE[0] - w) // 2, BAND + (ROOM[1] - h) // 2))
    ImageDraw.Draw(canvas).text((MARGIN, BAND // 2), caption, fill="black", anchor="lm",
                                font=ImageFont.load_default(40))
    return np.asarray(canvas)


def _figure(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no screen: draw into memory
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    return figure, FigureCanvasAgg(figure)


def _pixels(canvas) -> np.ndarray:
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def heatmap_image(live: list[dict], step: int, size: tuple[int, int], top: float | None = None) -> np.ndarray:
    """The run's KL heatmap (dimensions down, steps across, the colours of core.pictures) with axes, a colour
    bar in nats, a red line at `step` and the steps after it faded towards white (not darkened: dark means a
    dimension the code does not use)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    width, height = size
    top = pictures.kl_top(live) if top is None else top
    steps, dims = [r["step"] for r in live], len(live[0]["kl_per_dim"])
    half = (steps[-1] - steps[0]) / max(len(steps) - 1, 1) / 2 or 0.5  # each column centred on its row's step
    figure, canvas = _figure(width, height)
    ax = figure.add_axes((0.08, 0.12, 0.8, 0.84))
    cells = pictures.kl_heatmap_image(live, height=max(dims, 1) * 8, width=len(live) * 4, top=top)
    ax.imshow(cells, aspect="auto", interpolation="nearest",
              extent=(steps[0] - half, steps[-1] + half, dims - 0.5, -0.5))
    if step < steps[-1] + half:
        ax.axvspan(max(step, steps[0] - half), steps[-1] + half, color="white", alpha=0.7, lw=0)
    ax.axvline(step, color="#d62728", lw=4)  # the pages' step marker red
    ax.set_xlim(steps[0] - half, steps[-1] + half)  # a step before the first row is not drawn, nor widens the axes
    ax.set_yticks(range(dims) if dims <= 32 else range(0, dims, dims // 16),
                  [f"z{d}" for d in (range(dims) if dims <= 32 else range(0, dims, dims // 16))])
    ax.set_xlabel("step", fontsize=22)
    ax.set_ylabel("latent dimension", fontsize=22)
    ax.tick_params(labelsize=18)
    bar = figure.add_axes((0.9, 0.12, 0.025, 0.84))
    scale = ScalarMappable(Normalize(0, max(top, 1e-12)), ListedColormap(pictures.viridis(np.linspace(0, 1, 256))))
    colorbar = figure.colorbar(scale, cax=bar)
    colorbar.set_label("KL (nats)", fontsize=22)
    colorbar.ax.tick_params(labelsize=18)
    return _pixels(canvas)


def map_limits(maps) -> tuple[float, float, float, float]:
    """One frame for every map (the 1st to 99th percentile of all of them, padded), so the axes stay put."""
    every = np.concatenate([np.asarray(m.coords) for m in maps])
    low, high = np.percentile(every, 1, axis=0), np.percentile(every, 99, axis=0)
    pad = 0.08 * (high - low) + 1e-9
    return low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1]


def map_image(m: explore.LatentMap, limits, classes=(), size: int = 560) -> np.ndarray:
    """A latent map as a picture: points coloured by label, on fixed axes (a map's axes mean nothing, so
    they have no ticks)."""
    figure, canvas = _figure(size, size)
    grow = size / 560  # the marks and labels were sized for 560 pixels
    ax = figure.add_axes((0.02, 0.02, 0.96, 0.96))
    xy, labels = np.asarray(m.coords), np.asarray(m.labels)
    ax.scatter(xy[:, 0], xy[:, 1], c=labels % 10 if labels.min() >= 0 else "tab:blue", cmap="tab10", vmin=0, vmax=9,
               s=6 * grow ** 2, alpha=0.8, linewidths=0)
    if labels.min() >= 0 and labels.max() < 10:
        for label in np.unique(labels):  # each class's name at its centre
            cx, cy = np.median(xy[labels == label], axis=0)
            name = classes[label] if label < len(classes) else str(label)
            ax.text(cx, cy, name, fontsize=11 * grow, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(*limits[:2])
    ax.set_ylim(*limits[2:])
    ax.set_xticks([])
    ax.set_yticks([])
    return _pixels(canvas)


def encode(frames_: list[np.ndarray], suffix: str, fps: float = 2.0) -> bytes:
    """The file write() would make, as bytes (a page's download)."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        return write(Path(folder) / f"frames{suffix}", frames_, fps).read_bytes()


def write(path, frames_: list[np.ndarray], fps: float = 2.0) -> Path:
    """An animation (.gif, or .mp4 through ffmpeg) of the frames, or, for .png, the first frame alone."""
    path = Path(path)
    if not frames_:
        raise ConfigError("no frames to write")
    import imageio.v3 as iio
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".png":
        iio.imwrite(path, frames_[0])
    elif suffix == ".gif":
        iio.imwrite(path, np.stack(frames_), duration=1000 / fps, loop=0)
    elif suffix == ".mp4":
        # H.264 wants even sides: pad with white rather than let the writer resize (and blur) the frames
        h, w = frames_[0].shape[:2]
        padded = [np.pad(f, ((0, (-h) % 16), (0, (-w) % 16), (0, 0)), constant_values=255) for f in frames_]
        iio.imwrite(path, np.stack(padded), plugin="FFMPEG", fps=fps, codec="libx264", quality=8)
    else:
        raise ConfigError(f"{path.name}: write an animation as {' or '.join(FORMATS)}, or one step as .png")
    return path
