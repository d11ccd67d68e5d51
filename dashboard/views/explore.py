"""Explore: drag a slider per latent dimension and watch the decoder answer."""
import streamlit as st
import torch

from core import explore
from dashboard import plots
from dashboard.state import default, pick_model


@st.cache_data(show_spinner="Reading where real codes lie ...", max_entries=64)
def ranges_for(label: str, step: int, _model, _data):
    """Slider ranges from the aggregate posterior, once per model version (label and step)."""
    return explore.latent_ranges(_model, _data)


def code_widgets(model, ranges, hide_inactive: bool, start):
    """One widget per latent dimension; returns the code. Gaussian: sliders; bits: toggles; categorical: a picker."""
    d, kind = model.latent_dim, model.cfg.latent
    if kind == "categorical":
        pick = st.radio("Category", list(range(d)), horizontal=True, key="category",
                        index=int(max(range(d), key=lambda i: start[i])) if start else 0)
        return [1.0 if i == pick else 0.0 for i in range(d)]
    code, cols = [], st.columns(4)
    for i in range(d):
        value = start[i] if start else 0.0
        if hide_inactive and not ranges.active[i]:
            code.append(value if kind == "gaussian" else round(value))
            continue
        label = f"z{i}" + ("" if ranges.active[i] else " (inactive)")
        with cols[i % 4]:
            if kind == "bernoulli":
                code.append(1.0 if st.toggle(label, value=value > 0.5, key=f"bit-{i}") else 0.0)
            else:
                low, high = min(ranges.low[i], value), max(ranges.high[i], value)
                code.append(st.slider(label, float(low), float(high), float(value), key=f"z-{i}",
                                      help="Range: the aggregate posterior's mean ± 3 std."
                                      + ("" if ranges.active[i] else " Inactive: E_q[z] barely varies with x.")))
    return code


st.title("Explore")
st.caption("Each slider sets one latent coordinate z_d; the picture is the decoder's mean for that code. Slider "
           "ranges cover where the encoder puts real images (mean ± 3 std of the aggregate posterior). A dimension "
           "marked inactive barely moves with the input (Var_x E[z_d] ≤ 0.01): moving it usually changes nothing.")
source, model, data, objective, step = pick_model()
ranges = ranges_for(source.label, step, model, data)
y = None
if model.cfg.n_classes:
    y = st.selectbox("Label (the CVAE decodes this class)", list(range(model.cfg.n_classes)), key=default("label", 0))

tab_sliders, tab_traverse, tab_between, tab_prior, tab_recon = st.tabs(
    ["Sliders", "Traversals", "Interpolation", "Prior samples", "Reconstructions"])

@st.fragment
def slider_panel():
    """Only this part reruns when a slider moves: the decoded image answers without redrawing the page."""
    left, right = st.columns([3, 2])
    with left:
        a, b = st.columns(2)
        hide = a.toggle("Hide inactive dimensions", key=default("hide", False),
                        help=f"{sum(ranges.active)} of {model.latent_dim} dimensions are active.")
        index = b.number_input("Start from test image #", 0, len(data.test_x) - 1, key=default("image", 0))
        if b.button("Encode it", help="Set the sliders to this image's encoder mean."):
            start = explore.encode_mean(model, data.test_x[index], data.test_y[index])
            for i in range(model.latent_dim):
                st.session_state.pop(f"z-{i}", None)
                st.session_state.pop(f"bit-{i}", None)
            st.session_state.pop("category", None)
            st.session_state["start"] = start
        code = code_widgets(model, ranges, hide, st.session_state.get("start"))
    st.query_params["z"] = ",".join(f"{v:.2f}" for v in code)  # a shared link reproduces this code
    with right:
        image = data.to_image(explore.decode(model, code, y))
        st.image(plots.image_grid(image, nrow=1, scale=max(1, 256 // image.shape[-1])), caption="decoded",
                 width="stretch")
        st.session_state["decoded"] = image


if "start" not in st.session_state and st.query_params.get("z"):
    try:
        shared = [float(v) for v in st.query_params["z"].split(",")]
        if len(shared) == model.latent_dim:
            st.session_state["start"] = shared
    except ValueError:
        st.warning("The link's slider values are not numbers; starting from zero.")

with tab_sliders:
    slider_panel()

with tab_traverse:
    dims = st.multiselect("Dimensions", list(range(model.latent_dim)),
                          default=[i for i in range(model.latent_dim) if ranges.active[i]][:8], key="traverse-dims")
    reach = st.slider("Sweep each dimension from −r to r (the others at 0)", 0.5, 10.0, key=default("reach", 3.0))
    n = st.slider("Steps per row", 3, 15, key=default("traverse-steps", 9))
    if dims and model.cfg.latent == "gaussian":
        values = [-reach + 2 * reach * i / (n - 1) for i in range(n)]
        grid = explore.traversal(model, [0.0] * model.latent_dim, dims, values, y)
        st.image(plots.image_grid(data.to_image(grid), nrow=n), width="stretch",
                 caption=f"rows: z{', z'.join(map(str, dims))}; columns: {values[0]:.1f} → {values[-1]:.1f}")
    elif model.cfg.latent != "gaussian":
        st.info("Traversals sweep a continuous coordinate; this model's latents are discrete.")

with tab_between:
    a, b, c = st.columns(3)
    i = a.number_input("From test image #", 0, len(data.test_x) - 1, key=default("from", 0))
    j = b.number_input("To test image #", 0, len(data.test_x) - 1, key=default("to", 1))
    steps = c.slider("Steps", 3, 16, key=default("between-steps", 10))
    za, zb = explore.encode_mean(model, data.test_x[i], data.test_y[i]), explore.encode_mean(model, data.test_x[j], data.test_y[j])
    st.image(plots.image_grid(data.to_image(explore.interpolate(model, za, zb, steps, y)), nrow=steps),
             width="stretch", caption="decoded codes on the line between the two encoder means")

with tab_prior:
    sigma = st.slider("σ of the codes", 0.1, 5.0, step=0.1, key=default("sigma", 1.0),
                      help="The prior is N(0, I); μ-VAE codes spread wider and want σ ≈ 3.")
    st.image(plots.image_grid(data.to_image(explore.prior_samples(model, 32, sigma, y=y))), width="stretch",
             caption=f"decoded z ~ N(0, {sigma:g}² I)" if model.cfg.latent == "gaussian" else "decoded prior samples")

with tab_recon:
    x = data.test_x[:16]
    st.image(plots.image_grid(data.to_image(torch.cat([x, model.reconstruct(x, data.test_y[:16])]))), width="stretch",
             caption="test images (top two rows) and their reconstructions")
