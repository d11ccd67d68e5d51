"""Figure builders: pure functions from numbers to Plotly figures, testable without a browser."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.utils import make_grid

LOSS_TERMS = ("loss", "recon", "kl")


def loss_curves(history: list[dict], terms=LOSS_TERMS, smooth: int = 20) -> go.Figure:
    """One line per term against the step, as a running mean over `smooth` steps."""
    fig = go.Figure()
    steps = [r["step"] for r in history]
    for term in terms:
        values = np.array([r[term] for r in history if term in r], dtype=float)
        if len(values) == 0:
            continue
        k = max(1, min(smooth, len(values)))
        running = np.convolve(values, np.ones(k) / k, mode="valid")
        fig.add_scatter(x=steps[k - 1:], y=running, mode="lines", name=term)
    fig.update_layout(xaxis_title="step", yaxis_title="nats per image", height=320,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    return fig


def kl_per_dim_bars(kl_per_dim: list[float], threshold: float = 0.01, title: str = "KL per dimension") -> go.Figure:
    """KL of each latent dimension; bars under the threshold (collapsed) are grey."""
    colors = ["#1f77b4" if v >= threshold else "#bbbbbb" for v in kl_per_dim]
    fig = go.Figure(go.Bar(x=[f"z{i}" for i in range(len(kl_per_dim))], y=kl_per_dim, marker_color=colors))
    fig.update_layout(title=title, yaxis_title="KL (nats)", height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """N x C x H x W in [0, 1] -> one H x W x C uint8 picture, for st.image."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
