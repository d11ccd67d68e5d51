"""Sweeps: a sweep's trials as a table, and the collapse phase diagram of each objective over its grid (β × latent size).
A click on a cell (or a row) opens its models in Explore, Latent map or Compare."""
import pandas as pd
import streamlit as st

from core import sweep
from dashboard import plots
from dashboard.state import chart, sweep_folders, trial_label

PAGES = {"Explore": "views/explore.py", "Latent map": "views/latent_map.py", "Compare": "views/compare.py"}
# What the phase diagram can colour by, with what it means; the names are results.csv's columns.
METRICS = {
    "AU": "active units: dimensions whose posterior mean varies with the image (Var_x E[z_d] > 0.01)",
    "MI": "mutual information between image and code, nats (estimate; at most log of the test images used)",
    "IWAE NLL": "-IWAE_100 on 1,000 test images, nats: an upper bound on -log p(x)",
    "probe accuracy": "a logistic-regression probe reading the class from the posterior mean",
    "KL": "E_x KL(q(z|x) || p(z)) of the model's own posterior, nats",
    "ELBO": "test ELBO on 1,000 test images, nats",
}
REFRESH = 5  # seconds between redraws while a sweep is running
AXES = {"beta": "β", "latent": "latent size", "pixelcnn_layers": "PixelCNN layers"}  # the grid keys' names on the page

st.title("Sweeps")
st.caption("Every trial of a sweep (`vaelab sweep SPEC`, see the README's 'Sweeps'), with the diagnostics "
           "recorded when it finished. The phase diagram shows, for each objective, where the code stops being used "
           "along the sweep's grid (β and the latent size; a decoder's strength): the mean over seeds, ± their "
           "standard deviation.")
folders = sweep_folders()
if not folders:
    st.info("No sweep yet. Run one with `vaelab sweep experiments/sweeps/digits-collapse.toml`; it lands "
            "in `sweeps/`, where this page finds it.")
    st.stop()
names = list(folders)
wanted = st.query_params.get("sweep")
name = st.selectbox("Sweep", names, index=names.index(wanted) if wanted in names else 0, key="sweep")
st.query_params["sweep"] = name
folder = folders[name]
metric = st.selectbox("Colour by", list(METRICS), key="sweep-metric", help="\n\n".join(
    f"**{k}**: {v}" for k, v in METRICS.items()))


def open_buttons(trials: list[str], where: str):
    """Buttons that open these trials' models on another page (Compare takes them all)."""
    labels = [trial_label(name, t) for t in trials]
    for button, (page_name, page) in zip(st.columns(len(PAGES)), PAGES.items()):
        if button.button(f"Open in {page_name}", key=f"open-{where}-{page_name}", width="stretch",
                         help=f"{len(labels)} models" if page_name == "Compare" else labels[0]):
            params = {"compare": labels} if page_name == "Compare" else {"model": labels[0]}
            st.switch_page(page, query_params=params)


def body():
    rows = sweep.read_rows(folder)
    running = sweep.is_running(folder)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "failed", "pending")}
    st.caption(f"**{name}**: {len(rows)} trials, {counts['done']} done, {counts['failed']} failed"
               + (f", {counts['pending']} to go; **running**, this page refreshes every {REFRESH} s" if running
                  else f", {counts['pending']} not run" if counts["pending"] else "") + f" · `{folder}`")
    spec = folder / "spec.toml"
    if spec.exists():
        with st.expander("Spec"):
            st.code(spec.read_text(), language="toml")
    x, y = sweep.phase_axes(rows)
    diagrams = sweep.phase_cells(rows, metric, x, y)
    event = chart(plots.phase_diagram(diagrams, metric, AXES.get(x, x), AXES.get(y, y)), on_select="rerun",
                  selection_mode="points", key="phase")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    cell = [t for p in points for t in str(p.get("customdata", "")).split(",") if t]
    if cell:
        st.markdown(f"**Cell:** {len(cell)} trial{'s' if len(cell) != 1 else ''}: {', '.join(cell)}")
        open_buttons(cell, "cell")
    else:
        st.caption("Click a cell to open its models (one per seed).")

    table = pd.DataFrame(rows)
    for column in ("beta", "latent", "seed", "step", "seconds", "diagnose_seconds", "ELBO", "IWAE NLL", "KL", "AU",
                   "MI", "probe accuracy", "reliance gap"):
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    picked = st.dataframe(table, width="stretch", hide_index=True, on_select="rerun", selection_mode="single-row",
                          key="sweep-table", column_config={
                              "ELBO": st.column_config.NumberColumn(format="%.2f"),
                              "IWAE NLL": st.column_config.NumberColumn(format="%.2f"),
                              "KL": st.column_config.NumberColumn(format="%.2f"),
                              "MI": st.column_config.NumberColumn(format="%.2f"),
                              "probe accuracy": st.column_config.NumberColumn(format="%.3f"),
                              "reliance gap": st.column_config.NumberColumn(format="%.2f")})
    selected = picked.selection.rows if picked else []
    if selected:
        trial = table.iloc[selected[0]]
        if trial["status"] == "done":
            st.markdown(f"**Row:** {trial['trial']}")
            open_buttons([trial["trial"]], "row")
        else:
            st.warning(f"{trial['trial']} is {trial['status']}" + (f": {trial['message']}" if trial.get("message")
                                                                  else ""))
    failed = table[table["status"] == "failed"] if "status" in table else table.iloc[:0]
    if len(failed):
        with st.expander(f"Failed trials ({len(failed)})"):
            st.markdown("\n".join(f"- **{r['trial']}**: {r['message']}" for _, r in failed.iterrows()))
    st.download_button("Download the table as CSV", (folder / "results.csv").read_bytes(), f"{name}.csv", "text/csv")


if sweep.is_running(folder):
    st.fragment(run_every=REFRESH)(body)()
else:
    body()
