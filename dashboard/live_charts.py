"""The live panel's charts while a run trains: Vega-Lite specs that never change, and the data that does.

Streamlit draws a Plotly figure again from scratch whenever it changes (its element is keyed by the whole
figure), so a chart redrawn every two seconds is torn down and rebuilt each time. A Vega-Lite chart
whose spec stays the same keeps its view, and only its dataset is replaced in place: no rebuild, no
flash. Each builder is a pure function returning (data, spec); the spec holds no data."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.plots import LOSS_TERMS, smoothed

LOSS_SPEC = {
    "height": 320,
    "mark": {"type": "line", "clip": True},
    "encoding": {
        "x": {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": ",d"}},
        "y": {"field": "nats", "type": "quantitative", "title": "nats per image", "scale": {"zero": False}},
        "color": {"field": "term", "type": "nominal", "title": None, "sort": list(LOSS_TERMS),
                  "legend": {"orient": "top"}},
        "tooltip": [{"field": "term"}, {"field": "step", "format": ","}, {"field": "nats", "format": ".2f"}],
    },
}


def loss_data(history: list[dict], terms=LOSS_TERMS, smooth: int = 20) -> pd.DataFrame:
    """The loss terms' running means by step, long-form (step, term, nats), as plots.loss_curves draws them."""
    parts = []
    for term in terms:
        steps, values = smoothed(history, term, smooth)
        if len(values):
            parts.append(pd.DataFrame({"step": steps, "term": term, "nats": values}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "term", "nats"])


def loss_chart(history: list[dict]) -> tuple[pd.DataFrame, dict]:
    return loss_data(history), LOSS_SPEC


_STEP = {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": ",d"}}
METRICS_SPEC = {
    "height": 280,
    "layer": [
        {"mark": {"type": "line", "point": True, "color": "#1f77b4"},
         "encoding": {"x": _STEP, "y": {"field": "au", "type": "quantitative", "title": "active units",
                                        "scale": {"zero": True},
                                        "axis": {"tickMinStep": 1, "format": "d", "titleColor": "#1f77b4"}}}},
        {"layer": [
            {"mark": {"type": "area", "opacity": 0.2, "color": "#d62728"},
             "encoding": {"x": _STEP, "y": {"field": "mi_low", "type": "quantitative"}, "y2": {"field": "mi_high"}}},
            {"mark": {"type": "line", "point": True, "color": "#d62728"},
             "encoding": {"x": _STEP, "y": {"field": "mi", "type": "quantitative"},
                          "tooltip": [{"field": "step", "format": ","}, {"field": "mi", "title": "MI", "format": ".2f"},
                                      {"field": "mi_se", "title": "± (s.e.)", "format": ".2f"}]}},
            {"mark": {"type": "line", "strokeDash": [4, 4], "color": "grey"},
             "encoding": {"x": _STEP, "y": {"field": "mi_ceiling", "type": "quantitative",
                                            "title": "MI (nats; band ± 2 s.e., dashed: log B)",
                                            "scale": {"zero": True},
                                            "axis": {"orient": "right", "titleColor": "#d62728"}}}},
        ]},
    ],
    "resolve": {"scale": {"y": "independent"}},
}


def metrics_data(live: list[dict]) -> pd.DataFrame:
    """Active units and the MI estimate with its ±2 s.e. band and ceiling, by step."""
    rows = [r for r in live if r.get("au") is not None or r.get("mi") is not None]
    mi = np.array([np.nan if r.get("mi") is None else r["mi"] for r in rows], dtype=float)
    se = np.array([np.nan if r.get("mi_se") is None else r["mi_se"] for r in rows], dtype=float)
    return pd.DataFrame({"step": [r["step"] for r in rows], "au": [r.get("au") for r in rows], "mi": mi,
                         "mi_se": se, "mi_low": mi - 2 * se, "mi_high": mi + 2 * se,
                         "mi_ceiling": [r.get("mi_ceiling") for r in rows]})


def metrics_chart(live: list[dict]) -> tuple[pd.DataFrame, dict]:
    return metrics_data(live), METRICS_SPEC


RACE_SPEC = {
    "height": 300,
    "mark": {"type": "line", "clip": True},
    "encoding": {
        "x": {"field": "step", "type": "quantitative", "title": "step", "axis": {"format": ",d"}},
        "y": {"field": "nats", "type": "quantitative", "title": "training loss (nats per image)",
              "scale": {"zero": False}},
        "color": {"field": "run", "type": "nominal", "title": None, "legend": {"orient": "top"}},
        "tooltip": [{"field": "run"}, {"field": "step", "format": ","}, {"field": "nats", "format": ".2f"}],
    },
}


def race_chart(histories: dict[str, list[dict]], smooth: int = 20) -> tuple[pd.DataFrame, dict]:
    """Several runs' training losses (running means) by step, long-form (step, run, nats)."""
    parts = []
    for name, history in histories.items():
        steps, values = smoothed(history, "loss", smooth)
        if len(values):
            parts.append(pd.DataFrame({"step": steps, "run": name, "nats": values}))
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["step", "run", "nats"])
    return data, RACE_SPEC
