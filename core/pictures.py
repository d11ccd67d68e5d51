"""Pictures as pixels (H x W x C uint8): image grids and the KL-per-dimension heatmap, for the pages, the
trackers (core.track) and exported files alike."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid

# Plotly's "Viridis" (plotly.colors.sequential.Viridis): ten stops, equally spaced, blended linearly. The
# pictures use the same stops, so a KL heatmap drawn as pixels has the colours of the Plotly chart beside it.
VIRIDIS = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725")
MISSING = 128  # the grey of a missing value


def image_grid(images: torch.Tensor, nrow: int = 8, scale: int = 1) -> np.ndarray:
    """N x C x H x W in [0, 1] -> one H x W x C uint8 picture, for st.image. scale > 1 enlarges each
    pixel to a scale x scale block, so small images stay sharp instead of being blurred by the browser."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    picture = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture


def viridis(fraction) -> np.ndarray:
    """Colours (..., 3) in [0, 1] for fractions of the scale's top (clipped to [0, 1])."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS], dtype=float) / 255
    where = np.clip(np.asarray(fraction, dtype=float), 0, 1) * (len(stops) - 1)
    return np.stack([np.interp(where, np.arange(len(stops)), stops[:, c]) for c in range(3)], axis=-1)


def kl_values(live: list[dict]) -> np.ndarray:
    """The live rows' KL per dimension as a dimension x row array, NaN where a value is missing."""
    return np.array([[v if v is not None else np.nan for v in r["kl_per_dim"]] for r in live], dtype=float).T


def kl_top(live: list[dict]) -> float:
    """The largest KL of any dimension in the rows (0 when there is none): the top of a heatmap's colour
    scale, or, the largest over several runs, the top of a scale they share."""
    values = kl_values(live) if live else np.array([])
    return float(np.nanmax(values)) if np.isfinite(values).any() else 0.0


def kl_heatmap_image(live: list[dict], height: int = 160, width: int = 640, top: float | None = None) -> np.ndarray:
    """The KL heatmap as pixels (H, W, 3 uint8), for a live view that redraws every few seconds: a
    browser shows a picture for almost nothing, where a Plotly heatmap costs it about 0.1 s a redraw.
    Rows are dimensions (z0 on top), columns live rows in step order, Viridis from 0 to `top` nats (None:
    the rows' own largest KL; pass the largest over several runs so their pictures share one scale);
    a missing value is grey."""
    values = kl_values(live)
    top = kl_top(live) if top is None else top
    rgb = viridis(np.nan_to_num(values / max(top, 1e-12), nan=0.0))
    rgb[np.isnan(values)] = MISSING / 255
    rows = np.linspace(0, values.shape[0], height, endpoint=False).astype(int)  # nearest cell: sharp blocks
    cols = np.linspace(0, values.shape[1], width, endpoint=False).astype(int)
    return (rgb[rows][:, cols] * 255).round().astype(np.uint8)
