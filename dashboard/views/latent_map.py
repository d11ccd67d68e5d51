"""Latent map: where the encoder puts the test images, flattened to 2-D."""
import streamlit as st

from core import explore
from dashboard import plots
from dashboard.state import default, pick_model, warm_up

COLOURS = {"label": "label", "KL per image": "kl", "reconstruction error": "recon"}


@st.cache_data(show_spinner=False, max_entries=64)
def cached_map(label: str, step: int, method: str, n: int, perplexity: float, neighbors: int, _model, _data):
    """One map per model version (label and step), method and parameters: the second view is instant."""
    return explore.latent_map(_model, _data, method, n, perplexity=perplexity, neighbors=neighbors)


st.title("Latent map")
st.caption("Each point is one test image, placed by its encoder mean E_q[z|x] flattened to two dimensions. PCA "
           "keeps the directions of largest variance (distances are honest, clusters may overlap); t-SNE and UMAP keep "
           "neighbours together (clusters are clearer, but distances between clusters mean little). A good "
           "representation separates the classes; a collapsed one is a single blob. Select points (click, box "
           "or lasso) to see their images.")
source, model, data, objective, step = pick_model()
warming = warm_up()

a, b, c, d = st.columns(4)
methods = ["pca", "tsne", "umap"] + (["raw"] if model.latent_dim == 2 else [])
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
if method == "umap" and warming.is_alive():
    message += " The first UMAP of this server also compiles its kernels, about a minute."
with st.spinner(message, show_time=True):
    m = cached_map(source.label, step, method, n, perplexity, neighbors, model, data)

values = {"label": m.labels, "kl": m.kl, "recon": m.recon}[COLOURS[colour]]
hover = [f"test image {i}<br>label {y}<br>KL {k:.2f} nats<br>recon error {r:.1f} nats"
         for i, y, k, r in zip(m.index, m.labels, m.kl, m.recon)]
event = st.plotly_chart(plots.latent_scatter(m.coords, values, colour, hover, categorical=colour == "label"),
                        width="stretch", key="map", on_select="rerun", selection_mode=("points", "box", "lasso"))
chosen = [p["customdata"] for p in (event.selection.points if event else []) if "customdata" in p][:48]
if chosen:
    images = data.test_x[[m.index[i] for i in chosen]]
    st.image(plots.image_grid(data.to_image(images), nrow=12, scale=2), caption=f"{len(chosen)} selected images")
else:
    st.caption("Select points on the map to see their images here.")
