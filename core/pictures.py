"""Pictures as pixels (H x W x C uint8): image grids and the KL-per-dimension heatmap, for the pages, the
trackers (core.track) and exported files alike."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid


def image_grid(images: torch.Tensor, nrow: int = 8, scale: int = 1) -> np.ndarray:
    """N x C x H x W in [0, 1] -> one H x W x C uint8 picture, for st.image. scale > 1 enlarges each
    pixel to a scale x scale block, so small images stay sharp instead of being blurred by the browser."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    picture = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return picture.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else picture


def kl_heatmap_image(live: list[dict], height: int = 160, width: int = 640) -> np.ndarray:
    """The KL heatmap as pixels (H, W, 3 uint8), for a live view that redraws every few seconds: a
    browser shows a picture for almost nothing, where a Plotly heatmap costs it about 0.1 s a redraw.
    Rows are dimensions (z0 on top), columns live rows in step order, Viridis from 0 to the largest KL;
    a missing value is grey."""
    from matplotlib import colormaps
    values = np.array([[v if v is not None else np.nan for v in r["kl_per_dim"]] for r in live], dtype=float).T
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    rgb = colormaps["viridis"](np.nan_to_num(values / max(top, 1e-12), nan=0.0))[..., :3]
    rgb[np.isnan(values)] = 0.5
    rows = np.linspace(0, values.shape[0], height, endpoint=False).astype(int)  # nearest cell: sharp blocks
    cols = np.linspace(0, values.shape[1], width, endpoint=False).astype(int)
    return (rgb[rows][:, cols] * 255).round().astype(np.uint8)
