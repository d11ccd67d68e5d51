"""Compare and diagnose: several models side by side on the collapse diagnostics."""
import pandas as pd
import streamlit as st

from core.report import COMPARE, headline, run_all
from dashboard import plots
from dashboard.state import sources


@st.cache_data(show_spinner=False, max_entries=64)
def cached_report(label: str, step: int, _model, _data, _objective):
    """The diagnostics of one model version (label and step), computed once."""
    bar = st.progress(0.0, text=f"{label}: diagnostics ...")
    results = run_all(_model, _data, _objective, step, COMPARE,
                      progress=lambda f, name: bar.progress(f, text=f"{label}: {name} ..."))
    bar.empty()
    return results


st.title("Compare and diagnose")
st.caption("Several models on the same held-out images. ELBO and IWAE NLL measure fit (IWAE_k with the model's own "
           "posterior is the tighter bound). KL, active units (AU) and mutual information (MI) measure how much the "
           "code is used; the probe asks whether a linear classifier can read the class from the code; the "
           "reliance gap is how much worse the decoder does with another image's code. The verdict counts the "
           "dimensions that are active, unused by the decoder, or collapsed.")
options = sources()
if not options:
    st.info("No model yet. Train one on the **Train** page, or save a checkpoint into `checkpoints/`.")
    st.stop()
labels = [s.label for s in options]
# A first visit compares this session's runs, else the shipped collapse trio, else whatever is there.
trio = [f"file: {n}" for n in ("mnist-vae", "mnist-beta8", "mnist-free-bits-beta8") if f"file: {n}" in labels]
runs_here = [x for x in labels if x.startswith("run: ")]
default = [x for x in st.query_params.get_all("compare") if x in labels] or runs_here or trio or labels[:3]
chosen = st.multiselect("Models", labels, default=default, key="compare")
st.query_params["compare"] = chosen
reports, histories, failed, measured = {}, {}, [], []
for label in chosen:
    source = options[labels.index(label)]
    try:
        model, data, objective, step = source.load()
        reports[label] = source.recorded(data)  # shipped checkpoints carry theirs: no waiting
        if reports[label] is None:
            reports[label] = cached_report(label, step, model, data, objective)
            measured.append(label)
        histories[label] = source.history()
    except Exception as e:  # one bad model (a corrupt file, missing data) must not hide the others
        failed.append(f"{label}: {e}")
for message in failed:
    st.error(f"Cannot diagnose {message}")
if not reports:
    st.stop()

table = pd.DataFrame({label: headline(r) for label, r in reports.items()}).T
table.insert(0, "measured", ["now" if label in measured else "when saved" for label in table.index])
st.dataframe(table, width="stretch", column_config={
    "measured": st.column_config.TextColumn(help="when saved: read from the checkpoint's sidecar; now: measured "
                                                 "on this page (a run, or a checkpoint without recorded diagnostics)"),
    "ELBO": st.column_config.NumberColumn(format="%.2f", help="nats per image, the objective's posterior"),
    "IWAE NLL": st.column_config.NumberColumn(format="%.2f", help="-IWAE_k: an upper bound on -log p(x)"),
    "KL": st.column_config.NumberColumn(format="%.2f"), "MI": st.column_config.NumberColumn(format="%.2f"),
    "probe accuracy": st.column_config.NumberColumn(format="%.3f"),
    "reliance gap": st.column_config.NumberColumn(format="%.1f")})
st.download_button("Download the table as CSV", table.to_csv().encode(), "vaelab-compare.csv", "text/csv")
flags = [f"{label}: {flag}" for label, r in reports.items() for flag in r.get("collapse", {}).get("flags", [])]
if flags:
    with st.expander(f"Where the diagnostics disagree ({len(flags)})"):
        st.markdown("\n".join(f"- {f}" for f in flags))

left, right = st.columns(2)
left.plotly_chart(plots.kl_compare({k: r["kl"]["per_dim"] for k, r in reports.items() if "per_dim" in r["kl"]}),
                  width="stretch")
aggregates = {k: r["aggregate-posterior"] for k, r in reports.items() if "edges" in r.get("aggregate-posterior", {})}
if aggregates:
    dims = min(len(a["q_mass"]) for a in aggregates.values())
    dim = right.selectbox("Dimension", list(range(dims)), key="agg-dim", format_func=lambda d: f"z{d}")
    right.plotly_chart(plots.aggregate_vs_prior(aggregates, dim), width="stretch")
st.plotly_chart(plots.race_curves(histories), width="stretch")
st.caption("Charts export as PNG from the camera icon in their toolbar.")
