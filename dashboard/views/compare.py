"""Compare and diagnose: several models side by side on the collapse diagnostics."""
from pathlib import Path

import pandas as pd
import streamlit as st

from core import limits, snapshots
from core.errors import LabError
from core.posterior import Factorized

from core.report import COMPARE, Skipped, compare_row, data_identity, run_all
from dashboard import plots
from dashboard.state import Kind, chart, pick_step, shown_as, sources


@st.cache_data(show_spinner=False, max_entries=64)
def cached_report(ref: tuple, data_key: tuple, _label: str, _bundle, _data):
    """The diagnostics of one model version (its ref: id and step) on one dataset, computed once; the label
    only names it on the progress bar."""
    bar = st.progress(0.0, text=f"{_label}: diagnostics ...")
    results = run_all(_bundle, _data, COMPARE, progress=lambda f, name: bar.progress(f, text=f"{_label}: {name} ..."))
    bar.empty()
    return results


def measured(results: dict, name: str):
    """A diagnostic's result, or None where it was skipped or not run."""
    result = results.get(name)
    return None if result is None or isinstance(result, Skipped) else result


FIT_HELP = ("Nats per image on the same test images, lower is better: −ELBO ≥ IWAE NLL ≥ −log p(x), the true "
            "negative log-likelihood, so both are upper bounds on it, w = p(x, z) / q(z|x) being the importance "
            "weight. Positive for images of discrete pixels; for a density over real-valued pixels (Frey faces) "
            "both can be below 0, and lower is still better.")
VERDICT_HELP = ("How many latent dimensions the collapse report puts in each class (those with none are left out): "
                "**active**, the encoder varies the dimension with the image and the decoder uses it; **unused** by "
                "the decoder, the encoder varies it but zeroing it changes nothing the decoder scores; **collapsed**, its "
                "posterior mean is the same for every image.")

st.title("Compare and diagnose")
st.caption("Several models on the same held-out images. −ELBO and IWAE NLL measure fit, both in nats per image where "
           "lower is better (IWAE_k with the model's own posterior is the tighter bound, so IWAE NLL ≤ −ELBO). KL, "
           "active units (AU) and mutual information (MI) measure how much the "
           "code is used; the probe asks whether a linear classifier can read the class from the code; the "
           "reliance gap is how much worse the decoder does with another image's code. The verdict counts the "
           "dimensions that are active, unused by the decoder, or collapsed.")
options = sources()
if not options:
    st.info("No model yet. Train one on the **Train** page, or save a checkpoint into `checkpoints/`.")
    st.stop()
labels = [s.label for s in options]
# A first visit compares this session's runs, else the shipped collapse trio, else whatever is there.
trio = [x for x in map(Kind.FILE.label, ("mnist-vae", "mnist-beta8", "mnist-free-bits-beta8")) if x in labels]
runs_here = [s.label for s in options if s.run is not None]
most = limits.maximum("compare")
default = ([x for x in st.query_params.get_all("compare") if x in labels] or runs_here or trio or labels[:3])[:most]
chosen = st.multiselect("Models", labels, default=default, key="compare", max_selections=most, format_func=shown_as)
st.query_params["compare"] = chosen
reports, histories, failed, measured_now, branched, shown_at = {}, {}, [], [], {}, {}
sidecars = {str(s.path.resolve()): s.label for s in options if s.path is not None}
kept = {}
for label in chosen:
    try:
        kept[label] = options[labels.index(label)].steps()
    except LabError:
        kept[label] = []  # said below, when it is opened
step = pick_step(sorted({s for steps in kept.values() for s in steps}), key="compare-step")
for label in chosen:
    source = options[labels.index(label)]
    try:
        at = None if step is None or not kept[label] else snapshots.nearest(kept[label], step)
        bundle, data, missing = source.open(None if at == (kept[label] or [None])[-1] else at)
        shown_at[label] = bundle.step
        if data is None:
            failed.append(f"{label}: the diagnostics need its test images, and {missing}")
            continue
        # shipped checkpoints carry their last step's diagnostics: no waiting; an earlier step is measured here
        reports[label] = source.recorded(data) if bundle.step == kept[label][-1] else None
        if reports[label] is None:
            identity = tuple(sorted(data_identity(data).items()))
            reports[label] = cached_report(bundle.ref.key, identity, label, bundle, data)
            measured_now.append(label)
        histories[label] = source.history()
        parent = bundle.meta.get("parent") if isinstance(bundle.meta, dict) else None
        if isinstance(parent, dict) and isinstance(parent.get("step"), int):
            branched[label] = parent["step"]
            of = sidecars.get(str(Path(str(parent.get("path"))).resolve()), "a run not listed here")
            st.caption(f"**{shown_as(label)}** branched from {shown_as(of)} at step {parent['step']:,}"
                       + ("" if of in chosen else " (add it to the models to overlay its curve)"))
    except Exception as e:  # one bad model (a corrupt file, a crash in a diagnostic) must not hide the others
        failed.append(f"{label}: {type(e).__name__}: {e}" if not isinstance(e, LabError) else f"{label}: {e}")
for message in failed:
    st.error(f"Cannot diagnose {message}")
if not reports:
    st.stop()

table = pd.DataFrame({shown_as(label): compare_row(r) for label, r in reports.items()}).T
table.insert(0, "measured", ["now" if label in measured_now else "when saved" for label in reports])
table.insert(0, "step", [shown_at[label] for label in reports])
if step is not None and any(shown_at[label] != step for label in reports):
    st.caption("Each model is shown at its kept step nearest the slider's: "
               + ", ".join(f"{shown_as(label)} at {shown_at[label]:,}" for label in reports) + ".")
table["KL"] = [f"{kl:.2f}" + ("" if exact in (True, None) else " (est.)") if kl is not None else None
               for kl, exact in zip(table["KL"], table.pop("KL exact"))]
st.dataframe(table, width="stretch", column_config={
    "step": st.column_config.NumberColumn(format="%d", help="the step of the run whose weights are measured"),
    "measured": st.column_config.TextColumn(help="when saved: read from the checkpoint's sidecar; now: measured "
                                                 "on this page (a run, or a checkpoint without recorded diagnostics)"),
    "−ELBO": st.column_config.NumberColumn(format="%.2f", help=FIT_HELP + " **−ELBO**: the mean of −log w over k "
                                                                          "samples of the model's own posterior."),
    "IWAE NLL": st.column_config.NumberColumn(format="%.2f", help=FIT_HELP + " **IWAE NLL** = −IWAE_k: −log of the "
                                                                             "mean of the same k weights w."),
    "KL": st.column_config.TextColumn(help="E_x KL(q(z|x) || p(z)) of the model's own posterior, nats; (est.): a "
                                           "Monte Carlo estimate, for a flow posterior that has no closed form"),
    "MI": st.column_config.NumberColumn(format="%.2f", help="mutual information between image and code, nats: an "
                                        "estimate on N test images (at most 1,000), whose expectation cannot pass "
                                        "log N (log 1,000 = 6.91): near it, read \"at least this\""),
    # short labels and a short verdict, so the table fits the page's width without scrolling sideways
    "probe accuracy": st.column_config.NumberColumn("probe", format="%.3f", help="probe accuracy: a logistic "
                                                    "regression reading the class from the posterior mean"),
    "reliance gap": st.column_config.NumberColumn("reliance", format="%.1f", help="reliance gap, nats per image: "
                                                  "how much worse the decoder does with another image's code"),
    "verdict": st.column_config.TextColumn(help=VERDICT_HELP)})
st.download_button("Download the table as CSV", table.to_csv().encode(), "vaelab-compare.csv", "text/csv")
flags = [f"{shown_as(label)}: {flag}" for label, r in reports.items() for flag in getattr(measured(r, "collapse"), "flags", [])]
if flags:
    with st.expander(f"Where the diagnostics disagree ({len(flags)})"):
        st.markdown("\n".join(f"- {f}" for f in flags))

left, right = st.columns(2)
kls = {k: measured(r, "kl") for k, r in reports.items() if measured(r, "kl")}
with left:
    chart(plots.kl_compare({shown_as(k): kl.per_dim for k, kl in kls.items()}))
meanings = {}
for k, kl in kls.items():
    if kl.per_dim_meaning != Factorized.per_dim:
        meanings.setdefault(kl.per_dim_meaning, []).append(k)
for meaning, names in meanings.items():
    left.caption(f"{', '.join(names)}: per dimension, {meaning}.")
aggregates = {k: measured(r, "aggregate-posterior") for k, r in reports.items() if measured(r, "aggregate-posterior")}
if aggregates:
    dims = min(len(a.q_mass) for a in aggregates.values())
    dim = right.selectbox("Dimension", list(range(dims)), key="agg-dim", format_func=lambda d: f"z{d}")
    with right:
        chart(plots.aggregate_vs_prior({shown_as(k): a for k, a in aggregates.items()}, dim))
chart(plots.race_curves({shown_as(k): h for k, h in histories.items()},
                        branched={shown_as(k): s for k, s in branched.items()}, marker=step))
st.caption("Charts export as PNG from the camera icon in their toolbar.")
