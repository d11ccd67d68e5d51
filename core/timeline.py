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

def frames(view: str, bundles, data=None, maps=None, title: str = "", n: int = 32) -> list[np.ndarray]:
    """One picture (H x W x 3 uint8) per model, all the same size, each captioned with its step."""
    if view not in VIEWS:
        raise ConfigError(f"unknown view {view!r}; choose from: {', '.join(VIEWS)}")
    if view in ("map", "reconstructions") and data is None:
        raise ConfigError(f"the {view} view shows test images, and this model's dataset is not here")
    if view == "map":
        maps = maps if maps is not None else maps_over_time(bundles, data)
        limits = map_limits(maps)
        pictures_ = [map_image(m, limits, data.info.classes) for m in maps]
    elif view == "samples":
        scale = _scale(bundles[0].network.cfg.image_shape)
        pictures_ = [pictures.image_grid(_shown(explore.prior_samples(b.network, n), data), scale=scale) for b in bundles]
    elif view == "reconstructions":
        x, y = data.test_x[:n // 2], data.test_y[:n // 2]
        scale = _scale(bundles[0].network.cfg.image_shape)
        pictures_ = [pictures.image_grid(data.to_image(torch.cat([x, b.reconstruct(x, y)])), scale=scale)
                     for b in bundles]
    else:
        # the whole run's rows (an earlier step's sidecar still has them all); each frame marks its step
        live = max((b.meta.get("live") or b.live for b in bundles), key=len)
        if not live:
            raise ConfigError("the heatmap view needs the run's live rows, and it has none (trained with --live-every 0)")
        pictures_ = [heatmap_at(live, b.step) for b in bundles]
    return [captioned(p, f"{title + ' · ' if title else ''}step {b.step:,}"
                         + (f" · epoch {b.epoch:.1f}" if b.epoch is not None else "")) for p, b in zip(pictures_, bundles)]


def _shown(images, data):
    return data.to_image(images) if data is not None else images.clamp(0, 1)


def _scale(shape, width: int = 480) -> int:
    """Whole-pixel enlargement that makes a grid of eight images about `width` pixels wide."""
    return max(1, width // (8 * (shape[-1] + 1)))


def heatmap_at(live: list[dict], step: int, height: int = 240, width: int = 640) -> np.ndarray:
    """The run's KL heatmap with a white line at `step` and the steps after it faded towards white (not
    darkened: dark means a dimension the code does not use)."""
    picture = pictures.kl_heatmap_image(live, height, width).astype(float)
    first, last = live[0]["step"], live[-1]["step"]
    at = int(round((step - first) / max(last - first, 1) * (width - 1))) if step >= first else -1
    picture[:, max(at + 1, 0):] = 0.3 * picture[:, max(at + 1, 0):] + 0.7 * 255
    if at >= 0:
        picture[:, max(at - 1, 0):at + 2] = (214, 39, 40)  # the pages' step marker red
    return picture.round().astype(np.uint8)


def map_limits(maps) -> tuple[float, float, float, float]:
    """One frame for every map (the 1st to 99th percentile of all of them, padded), so the axes stay put."""
    every = np.concatenate([np.asarray(m.coords) for m in maps])
    low, high = np.percentile(every, 1, axis=0), np.percentile(every, 99, axis=0)
    pad = 0.08 * (high - low) + 1e-9
    return low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1]


def map_image(m: explore.LatentMap, limits, classes=(), size: int = 560) -> np.ndarray:
    """A latent map as a picture: points coloured by label, on fixed axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no screen: draw into memory
    from matplotlib.figure import Figure
    figure = Figure(figsize=(size / 100, size / 100), dpi=100)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_axes((0.02, 0.02, 0.96, 0.96))
    xy, labels = np.asarray(m.coords), np.asarray(m.labels)
    ax.scatter(xy[:, 0], xy[:, 1], c=labels % 10 if labels.min() >= 0 else "tab:blue", cmap="tab10", vmin=0, vmax=9,
               s=6, alpha=0.8, linewidths=0)
    if labels.min() >= 0 and labels.max() < 10:
        for label in np.unique(labels):  # each class's name at its centre
            cx, cy = np.median(xy[labels == label], axis=0)
            name = classes[label] if label < len(classes) else str(label)
            ax.text(cx, cy, name, fontsize=11, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    ax.set_xlim(*limits[:2])
    ax.set_ylim(*limits[2:])
    ax.set_xticks([])
    ax.set_yticks([])
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def captioned(picture: np.ndarray, text: str, height: int = 28) -> np.ndarray:
    """The picture under a white band with its caption (a slide's frame says which step it is)."""
    from PIL import Image, ImageDraw, ImageFont
    picture = np.asarray(picture, dtype=np.uint8)
    if picture.ndim == 2 or picture.shape[-1] == 1:
        picture = np.repeat(picture.reshape(*picture.shape[:2], 1), 3, axis=-1)
    canvas = Image.new("RGB", (picture.shape[1], picture.shape[0] + height), "white")
    canvas.paste(Image.fromarray(picture), (0, height))
    ImageDraw.Draw(canvas).text((8, height // 2), text, fill="black", anchor="lm", font=ImageFont.load_default(16))
    return np.asarray(canvas)


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
