"""Latent map: where the model's posterior puts the test images, flattened to 2-D."""
import numpy as np
import streamlit as st

from core import explore, timeline
from core.errors import LabError
from dashboard import plots
from dashboard.state import chart, default, pick_model, shown_as, sources, vega_chart, warm_up

COLOURS = {"label": "label", "KL per image": "kl", "reconstruction error": "recon"}


@st.cache_data(show_spinner=False, max_entries=16)
def cached_thumbnails(spec, index: tuple, _data) -> list[str]:
    """The map's images as small PNGs for the hover tooltips, made once per dataset and subset."""
    return plots.png_data_uris(_data.to_image(_data.test_x[list(index)]))


@st.cache_data(show_spinner=False, max_entries=64)
def cached_map(ref: tuple, spec, method: str, n: int, perplexity: float, neighbors: int, _bundle, _data):
    """One map per model version (its ref: id and step), dataset, method and parameters: the second view
    is instant."""
    return explore.latent_map(_bundle, _data, method, n, perplexity=perplexity, neighbors=neighbors)


@st.cache_data(show_spinner=False, max_entries=8)
def cached_timeline(refs: tuple, spec, method: str, n: int, perplexity: float, neighbors: int, _bundles, _data):
    """The maps of every kept step of one run (core.timeline: the same images, each step's map turned onto
    the one before), once per run version and settings."""
    bar = st.progress(0.0, text=f"Mapping step 1 of {len(_bundles)} ...")
    maps = timeline.maps_over_time(_bundles, _data, method, n, perplexity=perplexity, neighbors=neighbors,
                                   progress=lambda done, total: bar.progress(done / total, text=f"Mapped {done} of {total} steps ..."))
    bar.empty()
    return maps


@st.cache_data(show_spinner=False, max_entries=8)
def animation_file(refs: tuple, spec, method: str, n: int, perplexity: float, neighbors: int, suffix: str, _maps,
                   _bundles, _data, _title: str) -> bytes:
    return timeline.encode(timeline.frames("map", _bundles, _data, maps=_maps, title=_title), suffix)


st.title("Latent map")
st.caption("Each point is one test image, placed by its posterior mean E_q[z|x] flattened to two dimensions. PCA "
           "keeps the directions of largest variance (distances are honest, clusters may overlap); t-SNE and UMAP keep "
           "neighbours together (clusters are clearer, but distances between clusters mean little). A good "
           "representation separates the classes; a collapsed one is a single blob. Hover a point to see its "
           "image; click points (shift-click for more) or drag a box to see many at once.")
source, bundle, data, missing = pick_model()
if data is None:
    st.warning(f"The map places test images, and this model's dataset ({bundle.config.data.short_name}) is not here. "
               f"The Explore page's sliders and prior samples work without it.\n\n{missing}")
    st.stop()
approximate = len(data.test_x) >= explore.UMAP_EXACT_BELOW

a, b, c, d = st.columns(4)
methods = ["pca", "tsne", "umap"] + (["raw"] if bundle.latent_dim == 2 else [])
if st.session_state.get("method") not in methods:
    st.session_state["method"] = "raw" if "raw" in methods else "pca"
method = a.selectbox("Method", methods, key="method",
                     format_func={"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP", "raw": "raw z (2-D latent)"}.get)
total = len(data.test_x)
sizes = [k for k in (500, 1000, 2000, 5000, 10000) if k < total] + [total]
if st.session_state.get("n") not in sizes:
    st.session_state["n"] = min(2000, total)
n = b.select_slider("Images", sizes, key="n",
                    help=f"A fixed random subset of the {total:,} test images; t-SNE and UMAP take longer on more.")
colour = c.selectbox("Colour by", list(COLOURS), key=default("colour", "label" if data.info.n_classes else "KL per image"))
perplexity, neighbors = 30.0, 15
if method == "tsne":
    perplexity = d.slider("Perplexity", 5.0, 100.0, key=default("perplexity", 30.0))
elif method == "umap":
    neighbors = d.slider("Neighbours", 5, 100, key=default("neighbors", 15))

message = f"Computing the {method.upper()} map of {n:,} codes ..."
if method == "umap" and warm_up(approximate).is_alive():
    message += " The first UMAP of this server also compiles its kernels, about a minute."
steps = source.steps()
run_bundles = source.bundles() if len(steps) > 1 else [bundle]
refs = tuple(b.ref.key for b in run_bundles)
settings = (data.spec, method, n, perplexity, neighbors)
over_time = f"timeline-{refs}-{settings}"  # this run's maps of every step are made (t-SNE and UMAP: on request)
if len(steps) > 1 and (method in ("pca", "raw") or st.session_state.get(over_time)):
    maps = cached_timeline(refs, *settings, run_bundles, data)
    m = maps[[b.step for b in run_bundles].index(bundle.step)] if bundle.step in [b.step for b in run_bundles] else None
else:
    maps, m = None, None
if m is None:
    with st.spinner(message, show_time=True):
        m = cached_map(bundle.ref.key, data.spec, method, n, perplexity, neighbors, bundle, data)

by_label = {s.label: s for s in sources()}
beside = st.multiselect("Side by side with", [label for label in by_label if label != source.label], max_selections=3,
                        format_func=shown_as,
                        key="map-beside", help="Up to three more models of the same dataset, each mapped the same way "
                                               "from the same test images, in one row.")


def chart_of(m, title="", height=560, legend=True):
    labels = np.asarray(m.labels)
    if data.info.classes and len(labels) and 0 <= labels.min() and labels.max() < len(data.info.classes):
        labels = np.asarray(data.info.classes)[labels]  # your folder's class names, not their indices
    values = {"label": labels, "kl": m.kl, "recon": m.recon}[COLOURS[colour]]
    details = {"test image": m.index, "label": labels, "KL (nats)": np.round(m.kl, 2),
               "recon error (nats)": np.round(m.recon, 1)}
    images = cached_thumbnails(data.spec, tuple(m.index), data)
    return plots.latent_scatter(m.coords, values, colour, details, images, categorical=colour == "label",
                                height=height, title=title, legend=legend)


if not beside:
    event = vega_chart(chart_of(m), key="map", on_select="rerun")
else:
    columns = st.columns(1 + len(beside))
    with columns[0]:
        event = vega_chart(chart_of(m, shown_as(source.label), 380, legend=False), key="map", on_select="rerun")
    for column, label in zip(columns[1:], beside):
        with column:
            try:
                other, _, _ = by_label[label].open()
            except (KeyError, LabError) as e:
                st.warning(f"Cannot open {label}: {e}")
                continue
            if other.config.data.name != data.info.name:
                st.info(f"{label} was trained on {other.config.data.short_name}, not {data.spec.short_name}: it cannot place "
                        f"the same images.")
                continue
            with st.spinner(f"Mapping {label} ...", show_time=True):
                mo = cached_map(other.ref.key, data.spec, method, n, perplexity, neighbors, other, data)
            last = label == beside[-1]  # one legend for the row, on its last map
            vega_chart(chart_of(mo, shown_as(label), 380, legend=last), key=f"map-{label}")
# UMAP's kernels compile in the background once this page's map is drawn: started before it, the
# compiler (which holds the interpreter for seconds at a time) would make the first map wait for it.
warm_up(approximate)
chosen = plots.selected_points(event.selection if event else {}, m.coords)[:48]
if chosen:
    picked = data.test_x[[m.index[i] for i in chosen]]
    st.image(plots.image_grid(data.to_image(picked), nrow=12, scale=2), caption=f"{len(chosen)} selected images")
else:
    st.caption("Click or box-select points on the map to see their images here.")

st.subheader("Over the run")
if len(steps) < 2:
    st.caption("This model kept only its last weights. Runs trained now keep earlier steps too (dense early, sparse "
               "later), and this section plays them.")
    st.stop()
st.caption(f"The map at each of the {len(steps)} kept steps, of the same {n:,} test images. Each step's map is turned "
           "(rotated or mirrored, never stretched) onto the one before, and t-SNE and UMAP start from the step before's "
           "layout, so what moves is the codes, not the picture. Play it, or drag its slider; the step slider at the top "
           "shows the same aligned maps.")
if maps is None:
    if st.button(f"Map all {len(steps)} steps with {method.upper()}", icon=":material/movie:",
                 help="t-SNE and UMAP take seconds per step; PCA maps every step at once."):
        st.session_state[over_time] = True
        st.rerun()
    st.stop()
chart(plots.map_animation(maps, [b.step for b in run_bundles], maps[0].labels, data.info.classes), key="map-over-time")
title = f"{shown_as(source.label)} · {method.upper()}"
gif, mp4 = st.columns(2)
for column, suffix in ((gif, ".gif"), (mp4, ".mp4")):
    column.download_button(f"Download as {suffix[1:].upper()}", key=f"download{suffix}", width="stretch",
                           data=lambda suffix=suffix: animation_file(refs, *settings, suffix, maps, run_bundles, data, title),
                           file_name=f"{title.split(' · ')[0].replace('/', '-')}-map{suffix}", icon=":material/download:",
                           help="One frame per kept step, with its step written on it: for a slide.")
