"""The live panel's Vega-Lite charts (dashboard/live_charts.py): valid specs that never change while the
data does (so a redraw replaces the data in place), and the same numbers the finished run's Plotly charts
show."""
import json

import altair as alt
import numpy as np
import pytest

from conftest import ROOT
from core import checkpoint
from dashboard import live_charts, plots


@pytest.fixture(scope="module")
def shipped():
    return checkpoint.load(ROOT / "checkpoints" / "mnist-vae")


def valid(data, spec):
    """Altair checks the spec, with its data, against the Vega-Lite schema."""
    return alt.Chart.from_dict({**spec, "data": {"values": json.loads(data.to_json(orient="records"))}}).to_dict()


def test_the_loss_chart_draws_what_the_plotly_chart_draws_and_its_spec_never_changes(shipped):
    history = shipped.history
    early, late = live_charts.loss_chart(history[:300]), live_charts.loss_chart(history)
    assert early[1] == late[1] and "data" not in late[1] and "datasets" not in late[1]
    data = late[0]
    for term in plots.LOSS_TERMS:
        steps, values = plots.smoothed(history, term, 20)
        rows = data[data.term == term]
        assert list(rows.step) == steps and np.allclose(rows.nats, values)
    assert list(dict.fromkeys(data.term)) == list(plots.LOSS_TERMS)
    valid(*late)


def test_the_metrics_chart_bands_the_mi_estimate_by_two_standard_errors(shipped):
    live = [dict(r, mi_se=0.01 * (i + 1)) for i, r in enumerate(shipped.live)]
    assert min(r["mi"] - 2 * r["mi_se"] for r in live) > 0  # no band reaches 0 here
    data, spec = live_charts.metrics_chart(live)
    assert list(data.step) == [r["step"] for r in live] and list(data.au) == [r["au"] for r in live]
    assert np.allclose(data.mi_high - data.mi_low, [0.04 * (i + 1) for i in range(len(live))])
    assert np.allclose((data.mi_high + data.mi_low) / 2, [r["mi"] for r in live])
    # an estimate below 0 is drawn at 0, its band around the raw estimate cut at 0 (MI never is below it)
    noisy = live_charts.metrics_data([{"step": 1, "au": 0, "mi": 0.0, "mi_raw": -0.3, "mi_se": 0.2}])
    assert (noisy.mi[0], noisy.mi_low[0], noisy.mi_high[0]) == (0.0, 0.0, pytest.approx(0.1))
    assert spec == live_charts.metrics_chart(live[:2], dims=16)[1]
    old = live_charts.metrics_data(shipped.live)  # rows saved before the standard error was kept
    assert old.mi_low.isna().all() and not old.mi.isna().any()
    valid(data, spec)


def test_the_race_chart_has_one_line_per_run(shipped):
    data, spec = live_charts.race_chart({"a": shipped.history, "b": shipped.history[:500], "queued": []})
    assert set(data.run) == {"a", "b"}
    assert spec == live_charts.race_chart({})[1]
    valid(data, spec)
