"""Explore: drag a slider per latent dimension and watch the decoder answer."""
import time

import streamlit as st
import torch

from core import explore, limits
from dashboard import plots
from dashboard.latent_pad import latent_pad
from dashboard.state import default, model_state, pick_model, to_image


@st.cache_data(show_spinner="Reading where real codes lie ...", max_entries=64)
def ranges_for(ref: tuple, _bundle, _data):
    """Slider ranges from the aggregate posterior of the model's own posterior, once per model version."""
    return explore.latent_ranges(_bundle, _data)


def code_widgets(bundle, ranges, hide_inactive: bool, start):
    """One widget per discrete latent dimension; returns the code. Bits: toggles; categorical: a picker.
    Their keys carry the model's id, so a value set for one model never lands on another."""
    d, kind = bundle.latent_dim, bundle.network.cfg.latent
    if kind == "categorical":
        pick = st.radio("Category", list(range(d)), horizontal=True, key=model_state(bundle, "category"),
                        index=int(max(range(d), key=lambda i: start[i])) if start else 0)
        return [1.0 if i == pick else 0.0 for i in range(d)]
    code, cols = [], st.columns(4)
    for i in range(d):
        value = start[i] if start else 0.0
        if hide_inactive and not ranges.active[i]:
            code.append(round(value))
            continue
        label = f"z{i}" + ("" if ranges.active[i] else " (inactive)")
        with cols[i % 4]:
            code.append(1.0 if st.toggle(label, value=value > 0.5, key=model_state(bundle, f"bit-{i}")) else 0.0)
    return code


st.title("Explore")
st.caption("Each slider sets one latent coordinate z_d; the picture is the decoder's mean for that code. Slider "
           "ranges cover where the model's posterior puts real images (mean ± 3 std of the aggregate posterior). A "
           "dimension marked inactive barely moves with the input (Var_x E[z_d] ≤ 0.01): moving it usually changes "
           "nothing.")
source, bundle, data, missing = pick_model()
network, spec = bundle.network, bundle.config.data
if data is None:
    st.warning(f"This model's dataset ({spec.name}) is not here. Sliders, traversals and prior samples work without "
               "it; interpolation, reconstructions and slider ranges from real codes need its test images.\n\n"
               f"{missing}")
    ranges = explore.prior_ranges(network)
else:
    ranges = ranges_for(bundle.ref.key, bundle, data)
start_key = model_state(bundle, "start")
y = None
if network.cfg.n_classes:
    y = st.selectbox("Label (the CVAE decodes this class)", list(range(network.cfg.n_classes)), key=default("label", 0))

tab_sliders, tab_traverse, tab_between, tab_prior, tab_recon = st.tabs(
    ["Sliders", "Traversals", "Interpolation", "Prior samples", "Reconstructions"])


@st.fragment
def slider_panel():
    """Only this part reruns when a code comes back from the sliders. Gaussian latents: one component
    whose picture follows a drag (dashboard/latent_pad.py); bits and categories: Streamlit's widgets."""
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    hide = a.toggle("Hide inactive dimensions", key=default("hide", False),
                    help=f"{sum(ranges.active)} of {bundle.latent_dim} dimensions are active.")
    if data is not None:
        index = b.number_input("Start from test image #", 0, len(data.test_x) - 1, key=default("image", 0))
        if start_key not in st.session_state:
            # A first look starts at this image's code (its posterior mean), not at z = 0, which decodes to
            # a grey average on most models; rounded as the link keeps it, so a shared link shows the same.
            code = explore.encode_mean(bundle, data.test_x[index], data.test_y[index])
            st.session_state[start_key] = [round(v, 2) for v in code]
        if c.button("Encode it", help="Set the sliders to this image's posterior mean."):
            start = explore.encode_mean(bundle, data.test_x[index], data.test_y[index])
            mine = [model_state(bundle, name) for name in ("category", *(f"bit-{i}" for i in range(bundle.latent_dim)))]
            for key in mine:
                st.session_state.pop(key, None)  # the widgets take the new code as their value
            st.session_state[start_key] = start
            st.session_state[pad_version] = st.session_state.get(pad_version, 0) + 1  # a fresh pad from it
    start = st.session_state.get(start_key)
    if network.cfg.latent == "gaussian":
        pad_key = model_state(bundle, f"pad-{st.session_state.get(pad_version, 0)}")
        code, image = latent_pad(bundle, ranges, start or [0.0] * bundle.latent_dim, hide, y, data, decoded,
                                 pad_key, in_browser=st.query_params.get("decode") != "server")
        if forced:
            st.caption(f"PixelCNN decoder: a picture is drawn pixel by pixel, too slow to follow a slider. The picture "
                       f"is p(x_i = 1 | x_<i, z) at each pixel of test image #{st.session_state.get('image', 0)} under "
                       "this code, one pass: bright where the decoder expects ink. What moves as you drag is what "
                       "the decoder reads from z; on a collapsed model nothing moves.")
            draw_button(code)
        elif getattr(network, "layered", False):
            st.caption(f"Two stochastic layers: the sliders set the top layer z ({bundle.latent_dim} numbers); the "
                       f"picture is p(x | z1) at the mean of p(z1 | z), the {network.cfg.latent_below}-number layer "
                       "below, so it is decoded on the server.")
    else:
        left, right = st.columns([3, 2])
        with left:
            code = code_widgets(bundle, ranges, hide, start)
        image = decoded(code)
        right.image(plots.image_grid(image, nrow=1, scale=max(1, 256 // image.shape[-1])), caption="decoded",
                    width="stretch")
    st.query_params["z"] = ",".join(f"{v:.2f}" for v in code)  # a shared link reproduces this code
    st.session_state["decoded"] = image


# A PixelCNN draws a picture pixel by pixel (a pass per pixel, bench/pixelcnn.py); the sliders and traversals show
# instead what z changes in one pass: each pixel's probability given the pixels before it in one test image.
forced = explore.slow_pictures(network) and data is not None


def forced_image():
    """The test image the start widget names, its pixels rounded where the model was trained on binary draws."""
    x = data.test_x[st.session_state.get("image", 0)]
    return (x > 0.5).float() if spec.binarize == "dynamic" else x


def decoded(code):
    if forced:
        return explore.teacher_forced(network, code, forced_image())
    return to_image(explore.decode(network, code, y), spec, data)


def draw_button(code):
    """A PixelCNN's picture of this code, drawn pixel by pixel on request, with what it took."""
    if st.button("Draw a picture from this code", help="Pixel by pixel, with the same noise for every code, so "
                 "two codes' pictures differ only by what z changes."):
        start = time.perf_counter()
        picture = to_image(explore.decode(network, code, y), spec, data)
        st.image(plots.image_grid(picture, nrow=1, scale=max(1, 256 // picture.shape[-1])), width=256,
                 caption=f"drawn pixel by pixel in {time.perf_counter() - start:.1f} s")


pad_version = model_state(bundle, "pad-version")
if start_key not in st.session_state and st.query_params.get("z"):
    try:
        shared = [float(v) for v in st.query_params["z"].split(",", limits.maximum("latent"))]
        if len(shared) == bundle.latent_dim:  # each value within its slider's range (?z=1e308 is not a code)
            st.session_state[start_key] = [limits.clamp(v, lo, hi) for v, lo, hi in zip(shared, ranges.low, ranges.high)]
    except ValueError:
        st.warning("The link's slider values are not numbers; starting from a test image's code.")

with tab_sliders:
    slider_panel()

with tab_traverse:
    dims = st.multiselect("Dimensions", list(range(bundle.latent_dim)), key=model_state(bundle, "traverse-dims"),
                          default=[i for i in range(bundle.latent_dim) if ranges.active[i]][:8])
    reach = st.slider("Sweep each dimension from −r to r (the others at 0)", 0.5, 20.0, key=default("reach", 3.0),
                      help="The mu-VAE paper sweeps ±2 for a VAE and ±10 or ±20 for its spread-out mu-VAEs.")
    n = st.slider("Steps per row", 3, 40, key=default("traverse-steps", 9))
    if dims and network.cfg.latent == "gaussian":
        values = [-reach + 2 * reach * i / (n - 1) for i in range(n)]
        if forced:
            grid = explore.teacher_forced(network, explore.traversal_codes([0.0] * bundle.latent_dim, dims, values),
                                          forced_image())
        else:
            grid = explore.traversal(network, [0.0] * bundle.latent_dim, dims, values, y)
        st.image(plots.image_grid(to_image(grid, spec, data), nrow=n), width="stretch",
                 caption=f"rows: z{', z'.join(map(str, dims))}; columns: {values[0]:.1f} → {values[-1]:.1f}"
                         + (f"; each picture p(x_i = 1 | x_<i, z) over test image #{st.session_state.get('image', 0)}"
                            if forced else ""))
    elif network.cfg.latent != "gaussian":
        st.info("Traversals sweep a continuous coordinate; this model's latents are discrete.")

with tab_between:
    if data is None:
        st.info("Interpolation runs between the codes of two test images, and this model's dataset is not here.")
    else:
        a, b, c = st.columns(3)
        i = a.number_input("From test image #", 0, len(data.test_x) - 1, key=default("from", 0))
        j = b.number_input("To test image #", 0, len(data.test_x) - 1, key=default("to", 1))
        steps = c.slider("Steps", 3, 16, key=default("between-steps", 10))
        za = explore.encode_mean(bundle, data.test_x[i], data.test_y[i])
        zb = explore.encode_mean(bundle, data.test_x[j], data.test_y[j])
        st.image(plots.image_grid(data.to_image(explore.interpolate(network, za, zb, steps, y)), nrow=steps),
                 width="stretch", caption="decoded codes on the line between the two posterior means")

with tab_prior:
    sigma = st.slider("σ of the codes", 0.1, 5.0, step=0.1, key=default("sigma", 1.0),
                      help="The prior is N(0, I); μ-VAE codes spread wider and want σ ≈ 3.")
    count = explore.DRAWN if explore.slow_pictures(network) else 32
    with st.spinner(f"Drawing {count} pictures pixel by pixel ..." if explore.slow_pictures(network) else None):
        samples = explore.prior_samples(network, count, sigma, y=y)
    st.image(plots.image_grid(to_image(samples, spec, data)), width="stretch",
             caption=(f"decoded z ~ N(0, {sigma:g}² I)" if network.cfg.latent == "gaussian" else "decoded prior samples")
             + (f"; {count}, each drawn pixel by pixel" if explore.slow_pictures(network) else ""))

with tab_recon:
    if data is None:
        st.info("Reconstructions need the model's test images, and its dataset is not here.")
    else:
        x = data.test_x[:16]
        st.image(plots.image_grid(data.to_image(torch.cat([x, bundle.reconstruct(x, data.test_y[:16])]))),
                 width="stretch", caption="test images (top two rows) and their reconstructions through the "
                                          "model's own posterior mean")
