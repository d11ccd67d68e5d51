"""Figures of a model and its run, as pure functions from numbers to Plotly figures: the same builders draw the
dashboard's Compare page (dashboard/plots.py takes them from here) and `core.show` in a notebook. No Streamlit."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

LOSS_TERMS = ("loss", "recon", "kl")


def smoothed(history: list[dict], term: str, smooth: int, points: int = 400):
    """(steps, running mean over `smooth` steps) of one logged term, thinned to at most `points` points
    so a long run stays cheap to send and draw; empty when the term was not logged."""
    rows = [r for r in history if term in r]
    if not rows:
        return [], np.array([])
    k = min(smooth, len(rows))
    values = np.convolve(np.array([r[term] for r in rows], dtype=float), np.ones(k) / k, mode="valid")
    steps = [r["step"] for r in rows][k - 1:]
    stride = max(1, -(-len(values) // points))
    keep = list(range(len(values) - 1, -1, -stride))[::-1]  # always keep the latest point
    return [steps[i] for i in keep], values[keep]


def mark(fig: go.Figure, step: int | None) -> go.Figure:
    """A solid line at the step the page shows (the step slider's), on any chart with steps across."""
    if step is not None:
        fig.add_vline(x=step, line_color="#d62728", line_width=2, annotation_text=f"step {step:,}",
                      annotation_position="top right", annotation_font_color="#d62728")
    return fig


def race_curves(histories: dict[str, list[dict]], term: str = "loss", smooth: int = 20,
                branched: dict[str, int] | None = None, marker: int | None = None) -> go.Figure:
    """One term (running mean) of several runs against the step, one line per run. branched: a branch's
    name and the step it left its parent at; its line starts there (before it, it is the parent's) and a
    dotted mark shows where."""
    fig = go.Figure()
    branched = branched or {}
    for name, history in histories.items():
        steps, values = smoothed(history, term, smooth)
        if name in branched:
            keep = [i for i, step in enumerate(steps) if step > branched[name]]
            steps, values = [steps[i] for i in keep], values[keep]
        if len(values):
            fig.add_scatter(x=steps, y=values, mode="lines", name=name)
    for name, step in branched.items():
        fig.add_vline(x=step, line_dash="dot", line_color="grey", annotation_text=f"{name} branches",
                      annotation_position="top left")
    fig.update_layout(xaxis_title="step", yaxis_title=f"{term} (nats per image)", height=300,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.15))
    return mark(fig, marker)


def kl_compare(kl_per_dim: dict[str, list[float]]) -> go.Figure:
    """KL per latent dimension of several models, grouped bars."""
    fig = go.Figure()
    for name, values in kl_per_dim.items():
        fig.add_bar(x=[f"z{i}" for i in range(len(values))], y=values, name=name)
    fig.update_layout(barmode="group", yaxis_title="KL (nats)", height=320, title="KL per dimension",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig



def kl_heatmap(live: list[dict]) -> go.Figure:
    """The held-out KL of each dimension (rows) at each live row's step (columns): a row that turns dark is a
    dimension that collapsed."""
    rows = [r for r in live if r.get("kl_per_dim")]
    values = np.array([[np.nan if v is None else v for v in r["kl_per_dim"]] for r in rows], dtype=float).T
    fig = go.Figure(go.Heatmap(z=values, x=[r["step"] for r in rows], y=[f"z{i}" for i in range(len(values))],
                               colorscale="Viridis", zmin=0, colorbar=dict(title="nats"),
                               hovertemplate="step %{x:,}, %{y}: %{z:.3f} nats<extra></extra>"))
    fig.update_layout(title="KL per dimension, held out", xaxis_title="step", height=320,
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def units_and_mi(live: list[dict], dims: int) -> go.Figure:
    """Active units (left axis) and the MI estimate with its ceiling log B (right axis), by step."""
    rows = [r for r in live if r.get("au") is not None]
    steps = [r["step"] for r in rows]
    fig = go.Figure()
    fig.add_scatter(x=steps, y=[r["au"] for r in rows], name="active units", line=dict(color="#1f77b4"))
    fig.add_scatter(x=steps, y=[r.get("mi") for r in rows], name="MI (nats)", yaxis="y2", line=dict(color="#d62728"))
    fig.add_scatter(x=steps, y=[r.get("mi_ceiling") for r in rows], name="MI ceiling, log B", yaxis="y2",
                    line=dict(color="grey", dash="dash"))
    fig.update_layout(title="Active units and mutual information, held out", xaxis_title="step", height=320,
                      yaxis=dict(title="active units", range=[0, dims]),
                      yaxis2=dict(title="MI (nats)", overlaying="y", side="right", rangemode="tozero"),
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    return fig
