"""Figure builders: pure functions from numbers to Plotly figures, testable without a browser. The latent
map alone is an Altair (Vega-Lite) chart: Vega's tooltips can show an image, Plotly's cannot."""
from __future__ import annotations

import base64
import io

import altair as alt
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch
from PIL import Image

from core.figures import LOSS_TERMS, kl_compare, mark, race_curves, smoothed  # noqa: F401  (the pages' names)
from core.pictures import image_grid
from core.timeline import map_limits

MI_HELP = ("Estimated on one batch of B held-out images: the mean over images of log q(z|x) − log q(z) at one "
           "sampled code each, q(z) being the batch's mixture, shown ± its standard error. Those draws make it "
           "noisy, so near 0 an estimate can dip below 0 although MI itself never does; and its expectation "
           "cannot exceed log B, the dotted ceiling (6.2 nats for 500 images; a flow's is scored on 100, 4.6), so "
           "near the ceiling read it as \"at least this\".")


def mi_text(row: dict) -> str:
    """A live row's MI for a metric: "1.23 ± 0.05", or "≈ 0 (−0.07 ± 0.15)" for an estimate below 0 (MI is
    not), never a bare negative number. Rows written before the standard error existed show no ±."""
    mi, se = row.get("mi_raw", row.get("mi")), row.get("mi_se")
    if mi is None:
        return "–"
    spread = f" ± {se:.2f}" if se is not None else ""
    value = f"{mi:.2f}".replace("-0.00", "0.00")
    return f"≈ 0 ({value.replace('-', '−')}{spread})" if value.startswith("-") else value + spread


def round_step(span: float, most: int = 6) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that cuts `span` into at most `most` steps."""
    power = 10.0 ** np.floor(np.log10(max(span, 1e-9) / most))
    return next(m * power for m in (1, 2, 5, 10) if span / (m * power) <= most)


def unit_ticks(dims: int, most: int = 8) -> list[int]:
    """Whole-number ticks from 0 to dims: a step that divides dims (16 -> 0, 2, ..., 16; 32 -> 0, 4, ..., 32),
    or, where none gives a few ticks (a prime), a round step with dims added at the end."""
    step = next(d for d in range(1, dims + 1) if dims % d == 0 and dims // d <= most)
    if dims // step >= 2 or dims <= most:
        return list(range(0, dims + 1, step))
    step = max(1, int(round_step(dims, most)))
    ticks = list(range(0, dims + 1, step))
    return ticks[:-1] + [dims] if dims - ticks[-1] <= step / 2 else ticks + [dims]


def png_data_uris(images: torch.Tensor, scale: int | None = None) -> list[str]:
    """N x C x H x W in [0, 1] -> one small PNG per image as a data: URI, for a tooltip to show. Pixels
    are enlarged into sharp blocks, by default to about 64 pixels high (MNIST 2x, 8x8 digits 8x)."""
    scale = scale or max(1, 64 // images.shape[-2])
    uris = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image_grid(image[None], nrow=1, scale=scale)).save(buffer, format="PNG")
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return uris


def latent_scatter(coords, color, color_name: str, details: dict[str, list], images: list[str] | None,
                   categorical: bool, height: int = 560, title: str = "", legend: bool = True) -> alt.Chart:
    """A 2-D map of codes, one point per image, coloured by label (categories) or by a number. Hovering a
    point shows its image (a data: URI in the field "image", which Vega's tooltip draws) and `details`.
    Clicking picks points (shift-click adds) and dragging draws a box: selections "pick" (field "point",
    the row's position) and "box" (x and y ranges)."""
    xy = np.asarray(coords, dtype=float)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], color_name: color, "point": range(len(xy)), **details})
    tooltip = list(details)
    if images is not None:
        frame["image"] = images
        tooltip = ["image", *tooltip]  # a list, so the image is drawn rather than printed
    pick = alt.selection_point(name="pick", fields=["point"], on="click")
    box = alt.selection_interval(name="box")
    kind = "nominal" if categorical else "quantitative"
    scale = alt.Scale(scheme="category10" if len(set(color)) <= 10 else "tableau20") if categorical else \
        alt.Scale(scheme="viridis")
    return (alt.Chart(frame, height=height, title=title)
            .mark_circle(size=30)
            .encode(x=alt.X("x", axis=None), y=alt.Y("y", axis=None),
                    color=alt.Color(f"{color_name}:{kind.upper()[0]}", scale=scale, title=color_name,
                                    **({} if legend else {"legend": None})),
                    opacity=alt.condition(pick | box, alt.value(0.85), alt.value(0.25)), tooltip=tooltip)
            .add_params(pick, box))


def selected_points(selection: dict, coords) -> list[int]:
    """Rows picked by click or inside the drawn box, from st.altair_chart's selection event."""
    picked = [p["point"] for p in selection.get("pick") or [] if "point" in p]
    ranges = selection.get("box") or {}
    if "x" in ranges and "y" in ranges:
        xy = np.asarray(coords, dtype=float)
        (x0, x1), (y0, y1) = sorted(ranges["x"]), sorted(ranges["y"])
        inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
        picked += [int(i) for i in inside if i not in picked]
    return picked


def aggregate_vs_prior(aggregates: dict, dim: int) -> go.Figure:
    """The aggregate posterior q(z_d) of several models as histograms (mass per bin), against the
    prior's mass per bin, for one latent dimension. aggregates: {name: AggregatePosteriorResult}."""
    fig = go.Figure()
    for name, agg in aggregates.items():
        edges = np.asarray(agg.edges)
        fig.add_scatter(x=(edges[:-1] + edges[1:]) / 2, y=agg.q_mass[dim], name=f"{name}: q(z{dim})",
                        mode="lines", line=dict(shape="hvh"))
    if aggregates:
        widest = max(aggregates.values(), key=lambda a: a.edges[-1] - a.edges[0])
        edges = np.asarray(widest.edges)
        fig.add_scatter(x=(edges[:-1] + edges[1:]) / 2, y=widest.prior_mass, name="prior p(z)",
                        mode="lines", line=dict(dash="dot", color="black", shape="hvh"))
    fig.update_layout(title=f"Aggregate posterior against the prior, z{dim}", xaxis_title=f"z{dim}",
                      yaxis_title="mass per bin", height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def phase_diagram(diagrams: list, metric: str, x_name: str = "β", y_name: str = "latent size") -> go.Figure:
    """The collapse phase diagram: one heatmap per objective (core.sweep.phase_cells) of the metric's mean
    over seeds, each cell labelled mean ± sd. A cell's trial ids ride along as customdata, so a click on it
    names the models behind it."""
    from plotly.subplots import make_subplots

    if diagrams and all(d.y == [None] for d in diagrams) and len({tuple(d.x) for d in diagrams}) == 1:
        return one_axis_diagram(diagrams, metric, x_name)
    fig = make_subplots(rows=1, cols=max(1, len(diagrams)), subplot_titles=[d.objective for d in diagrams],
                        horizontal_spacing=0.06)
    values = [v for d in diagrams for row in d.mean for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)

    def label(m, s, n):
        if m is None:
            return "–"
        return f"{m:.3g}" + (f" ± {s:.2g}" if n > 1 else "")

    for i, d in enumerate(diagrams, start=1):
        text = [[label(m, s, n) for m, s, n in zip(*cells)] for cells in zip(d.mean, d.sd, d.n)]
        xs, ys = [f"{v:g}" for v in d.x], ["" if v is None else f"{v:g}" for v in d.y]
        fig.add_trace(go.Heatmap(
            z=d.mean, x=xs, y=ys, text=text, texttemplate="%{text}", textfont={"size": 12}, zmin=low, zmax=high,
            colorscale="Viridis", showscale=i == len(diagrams), colorbar={"title": metric}, hoverinfo="skip"),
            row=1, col=i)
        # Heatmap cells cannot be selected in the browser; a near-invisible square marker on each can, and it
        # carries the cell's trial ids, so a click names the models behind the cell.
        fig.add_trace(go.Scatter(
            x=[x for _ in ys for x in xs], y=[y for y in ys for _ in xs], mode="markers", showlegend=False,
            marker={"symbol": "square", "size": 44, "opacity": 0.01, "color": "white"},
            customdata=[",".join(ids) for row in d.trials for ids in row], text=[t for row in text for t in row],
            hovertemplate=f"{d.objective}<br>{x_name} %{{x}}, {y_name} %{{y}}<br>{metric} %{{text}}<br>"
                          f"click to open its models<extra></extra>"), row=1, col=i)
        fig.update_xaxes(title_text=x_name, type="category", row=1, col=i)
        fig.update_yaxes(title_text=y_name if i == 1 else None, type="category", row=1, col=i)
    fig.update_layout(height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10}, clickmode="event+select",
                      dragmode=False)
    return fig


def one_axis_diagram(diagrams: list, metric: str, x_name: str) -> go.Figure:
    """A sweep whose grid has one axis beside the objective (a decoder's strength): one heatmap, a row per
    objective, so every cell is wide enough for its label; clickable as phase_diagram's cells are."""
    xs, names = [f"{v:g}" for v in diagrams[0].x], [d.objective for d in diagrams]
    mean = [d.mean[0] for d in diagrams]
    text = [["–" if m is None else f"{m:.3g}" + (f" ± {s:.2g}" if n > 1 else "") for m, s, n in zip(d.mean[0], d.sd[0], d.n[0])]
            for d in diagrams]
    fig = go.Figure(go.Heatmap(z=mean, x=xs, y=names, text=text, texttemplate="%{text}", textfont={"size": 13},
                               colorscale="Viridis", colorbar={"title": metric}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=[x for _ in names for x in xs], y=[n for n in names for _ in xs], mode="markers", showlegend=False,
        marker={"symbol": "square", "size": 44, "opacity": 0.01, "color": "white"},
        customdata=[",".join(ids) for d in diagrams for ids in d.trials[0]], text=[t for row in text for t in row],
        hovertemplate=f"%{{y}}<br>{x_name} %{{x}}<br>{metric} %{{text}}<br>click to open its models<extra></extra>"))
    fig.update_xaxes(title_text=x_name, type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(height=max(300, 60 * len(names) + 100), margin={"t": 20, "b": 10, "l": 10, "r": 10},
                      clickmode="event+select", dragmode=False)
    return fig


def map_animation(maps: list, steps: list[int], labels, classes=(), height: int = 600) -> go.Figure:
    """The latent maps of a run's kept steps (core.timeline, aligned) as one Plotly figure with a frame per
    step, a Play / Pause pair and a step slider of its own: the browser animates it with no server round trip.
    The axes are fixed over all frames, so what moves is the points, not the frame."""
    labels = np.asarray(labels)
    palette = px.colors.qualitative.D3  # category10, as the single-step map and the exported frames colour them
    groups = sorted(set(labels.tolist()))

    def name(v):
        return str(classes[v]) if 0 <= v < len(classes) else str(v)

    def traces(m):
        xy = np.asarray(m.coords)
        return [go.Scattergl(x=xy[labels == g, 0], y=xy[labels == g, 1], mode="markers", name=name(g),
                             marker=dict(size=4, opacity=0.75, color=palette[i % len(palette)]))
                for i, g in enumerate(groups)]

    x0, x1, y0, y1 = map_limits(maps)
    fig = go.Figure(data=traces(maps[0]), frames=[go.Frame(data=traces(m), name=str(s)) for m, s in zip(maps, steps)])
    play = dict(label="Play", method="animate", args=[None, dict(frame=dict(duration=700, redraw=True),
                                                                  transition=dict(duration=300), fromcurrent=True)])
    pause = dict(label="Pause", method="animate", args=[[None], dict(frame=dict(duration=0, redraw=False),
                                                                      mode="immediate")])
    slider = dict(active=0, currentvalue=dict(prefix="step "), pad=dict(t=40),
                  steps=[dict(label=f"{s:,}", method="animate",
                              args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True))]) for s in steps])
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(itemsizing="constant"),
                      xaxis=dict(range=[x0, x1], showticklabels=False), yaxis=dict(range=[y0, y1], showticklabels=False),
                      updatemenus=[dict(type="buttons", direction="left", x=0, y=-0.05, xanchor="left", yanchor="top",
                                        buttons=[play, pause], showactive=False)],
                      sliders=[slider | dict(x=0.15, len=0.85, y=-0.02)])
    return fig
