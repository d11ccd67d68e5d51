"""The Train page's charts: Vega-Lite specs that never change, and the data that does.

Streamlit draws a Plotly figure again from scratch whenever it changes (its element is keyed by the whole
figure), so a chart redrawn every two seconds while a run trains, or at every move of the Step slider, is
torn down and rebuilt each time. A Vega-Lite chart whose spec stays the same keeps its view, and only its
dataset is replaced in place: no rebuild, no flash. The step the slider shows travels in the data too (a
`marker` column, the same in every row), drawn as a red line. Each builder is a pure function returning
(data, spec); the spec holds no data."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.pictures import kl_top, kl_values
from dashboard.plots import LOSS_TERMS, mi_text, smoothed, unit_ticks

AU_COLOR, MI_COLOR = "#1f77b4", "#d62728"

_STEP = {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": ",d"}}
# The step the page shows: a red line with its label, from the data's `marker` column (none where it is null).
MARKER = {
    "transform": [{"aggregate": [{"op": "max", "field": "marker", "as": "at"}]}, {"filter": "isValid(datum.at)"},
                  {"calculate": "'step ' + format(datum.at, ',')", "as": "label"}],
    "layer": [
        {"mark": {"type": "rule", "color": "#d62728", "strokeWidth": 2},
         "encoding": {"x": {"field": "at", "type": "quantitative"}}},
        {"mark": {"type": "text", "color": "#d62728", "align": "left", "baseline": "top", "dx": 4, "y": 2},
         "encoding": {"x": {"field": "at", "type": "quantitative"}, "text": {"field": "label"}}},
    ],
}


def with_marker(data: pd.DataFrame, marker: int | None) -> pd.DataFrame:
    return data.assign(marker=np.nan if marker is None else float(marker))


def curves_spec(colour: str, title: str, height: int, sort: list | None = None) -> dict:
    """Running means by step, one line per value of `colour` (a loss term, or a run), and the step marker."""
    return {
        "height": height,
        "layer": [{
            "mark": {"type": "line", "clip": True},
            "encoding": {
                "x": _STEP,
                "y": {"field": "nats", "type": "quantitative", "title": title, "scale": {"zero": False}},
                "color": {"field": colour, "type": "nominal", "title": None, "legend": {"orient": "top"},
                          **({"sort": sort} if sort else {})},
                "tooltip": [{"field": colour}, {"field": "step", "format": ","}, {"field": "nats", "format": ".2f"}],
            },
        }, MARKER],
    }


def curves_data(lines: dict[str, tuple[list[dict], str]], colour: str, smooth: int) -> pd.DataFrame:
    """{name: (history, term)} -> long-form (step, colour, nats): each term's running mean over `smooth`
    steps, thinned as plots.smoothed thins it."""
    parts = []
    for name, (history, term) in lines.items():
        steps, values = smoothed(history, term, smooth)
        if len(values):
            parts.append(pd.DataFrame({"step": steps, colour: name, "nats": values}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", colour, "nats"])


LOSS_SPEC = curves_spec("term", "nats per image", 320, sort=list(LOSS_TERMS))
RACE_SPEC = curves_spec("run", "training loss (nats per image)", 300)


def loss_data(history: list[dict], terms=LOSS_TERMS, smooth: int = 20) -> pd.DataFrame:
    """The loss terms' running means by step, long-form (step, term, nats)."""
    return curves_data({term: (history, term) for term in terms}, "term", smooth)


def loss_chart(history: list[dict], marker: int | None = None) -> tuple[pd.DataFrame, dict]:
    return with_marker(loss_data(history), marker), LOSS_SPEC


def heatmap_chart(live: list[dict], marker: int | None = None, top: float | None = None) -> tuple[pd.DataFrame, dict]:
    """The held-out KL per dimension, dimensions down and steps across, Viridis from 0 to `top` nats (None:
    these rows' largest; runs side by side pass one top). The spec changes only with `top`."""
    values = kl_values(live)  # dimensions x rows
    steps = np.array([r["step"] for r in live], dtype=float)
    ends = np.append(steps[1:], steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)) if len(steps) else steps
    dims, cols = np.indices(values.shape)
    data = pd.DataFrame({"dim": dims.ravel(), "step": steps[cols.ravel()] if len(steps) else [],
                         "end": ends[cols.ravel()] if len(steps) else [], "kl": values.ravel()})
    scale = max(kl_top(live) if top is None else top, 1e-12)
    spec = {
        "height": 320,
        "layer": [{
            "mark": {"type": "rect"},
            "encoding": {
                "x": _STEP, "x2": {"field": "end"},
                "y": {"field": "dim", "type": "ordinal", "title": None, "axis": {"labelExpr": "'z' + datum.value"}},
                "color": {"field": "kl", "type": "quantitative", "title": "nats",
                          "scale": {"scheme": "viridis", "domain": [0, round(scale, 6)], "clamp": True}},
                "tooltip": [{"field": "step", "format": ","}, {"field": "dim", "title": "dimension"},
                            {"field": "kl", "title": "KL (nats)", "format": ".3f"}],
            },
        }, MARKER],
    }
    return with_marker(data, marker), spec


def metrics_spec(dims: int) -> dict:
    """Active units on the left, whole units from 0 to the latent size; the MI estimate on the right with its
    ± 2 s.e. band and its log-B ceiling (dashed), from 0 or the lowest band, on Vega's round ticks."""
    return {
        "height": 280,
        "layer": [
            {"mark": {"type": "line", "point": True, "color": AU_COLOR},
             "encoding": {"x": _STEP, "y": {"field": "au", "type": "quantitative", "title": "active units",
                                            "scale": {"domain": [0, dims], "nice": False},
                                            "axis": {"values": unit_ticks(dims), "format": "d", "titleColor": AU_COLOR}},
                          "tooltip": [{"field": "step", "format": ","}, {"field": "au", "title": "active units"}]}},
            {"layer": [
                {"mark": {"type": "area", "opacity": 0.2, "color": MI_COLOR},
                 "encoding": {"x": _STEP, "y": {"field": "mi_low", "type": "quantitative"}, "y2": {"field": "mi_high"}}},
                {"mark": {"type": "line", "point": True, "color": MI_COLOR},
                 "encoding": {"x": _STEP, "y": {"field": "mi", "type": "quantitative"},
                              "tooltip": [{"field": "step", "format": ","}, {"field": "mi_text", "title": "MI (nats)"}]}},
                {"mark": {"type": "line", "strokeDash": [4, 4], "color": "grey"},
                 "encoding": {"x": _STEP, "y": {"field": "mi_ceiling", "type": "quantitative",
                                                "title": "MI (nats)",
                                                "scale": {"zero": True},
                                                "axis": {"orient": "right", "titleColor": MI_COLOR, "grid": False}}}},
            ]},
            MARKER,
        ],
        "resolve": {"scale": {"y": "independent"}},
    }


def metrics_data(live: list[dict]) -> pd.DataFrame:
    """Active units and the MI estimate (clipped at 0) with its ±2 s.e. band around the raw estimate, also
    clipped, and the ceiling, by step."""
    rows = [r for r in live if r.get("au") is not None or r.get("mi") is not None]
    mi = np.array([np.nan if r.get("mi") is None else r["mi"] for r in rows], dtype=float)
    raw = np.array([np.nan if r.get("mi") is None else r.get("mi_raw", r["mi"]) for r in rows], dtype=float)
    se = np.array([np.nan if r.get("mi_se") is None else r["mi_se"] for r in rows], dtype=float)
    return pd.DataFrame({"step": [r["step"] for r in rows], "au": [r.get("au") for r in rows], "mi": mi,
                         "mi_se": se, "mi_low": np.maximum(raw - 2 * se, 0), "mi_high": np.maximum(raw + 2 * se, 0),
                         "mi_text": [mi_text(r) for r in rows], "mi_ceiling": [r.get("mi_ceiling") for r in rows]})


def metrics_chart(live: list[dict], marker: int | None = None, dims: int | None = None) -> tuple[pd.DataFrame, dict]:
    """dims: the latent size (default: the rows' number of KL values)."""
    sizes = [len(r["kl_per_dim"]) for r in live if r.get("kl_per_dim")]
    dims = dims or (sizes[-1] if sizes else max([r.get("au") or 0 for r in live], default=0)) or 1
    return with_marker(metrics_data(live), marker), metrics_spec(dims)


def race_chart(histories: dict[str, list[dict]], smooth: int = 20, marker: int | None = None
               ) -> tuple[pd.DataFrame, dict]:
    """Several runs' training losses (running means) by step, long-form (step, run, nats)."""
    data = curves_data({name: (history, "loss") for name, history in histories.items()}, "run", smooth)
    return with_marker(data, marker), RACE_SPEC
