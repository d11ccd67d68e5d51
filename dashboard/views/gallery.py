"""Gallery: every checkpoint on disk, with a thumbnail, opened in any page with one click."""
import streamlit as st

from core import explore
from core.errors import LabError
from dashboard import plots
from dashboard.state import checkpoint_files, file_label, load_checkpoint, parse_label, to_image, try_data

PAGES = {"Explore": "views/explore.py", "Latent map": "views/latent_map.py", "Compare": "views/compare.py"}


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(ref: tuple, path: str):
    """Prior samples need only the decoder: the dataset only for a mean-normalized model's pixels."""
    bundle = load_checkpoint(path)
    spec = bundle.config.data
    data = try_data(spec)[0] if spec.normalize != "none" else None
    return plots.image_grid(to_image(explore.prior_samples(bundle.network, 16), spec, data), nrow=8)


st.title("Gallery")
st.caption("The shipped models and the runs you saved from the Train page. "
           "The thumbnails are samples from each model's prior.")
files = checkpoint_files()
if not files:
    st.info("No checkpoints yet. Press **Save** on a run in the Train page, or train one from the command line: "
            "`./lab core train --dataset mnist --epochs 5`.")
    st.stop()
for row in range(0, len(files), 3):
    for col, path in zip(st.columns(3), files[row:row + 3]):
        label = file_label(path)
        with col.container(border=True):
            st.markdown(f"**{parse_label(label)[1]}**")
            try:
                bundle = load_checkpoint(path)
                st.image(thumbnail(bundle.ref.key, str(path)), width="stretch")
                st.caption(f"{bundle.config.objective} on {bundle.config.data.short_name} · z={bundle.latent_dim} · "
                           f"step {bundle.step:,}")
            except LabError as e:
                st.error(str(e))
                continue
            missing = try_data(bundle.config.data)[1]
            if missing:
                st.caption(f"Its dataset ({bundle.config.data.short_name}) is not here: prior samples and sliders work; "
                           "the latent map, reconstructions and diagnostics need it.", help=missing)
            for button, (name, page) in zip(st.columns(len(PAGES)), PAGES.items()):
                if button.button(name, key=f"open-{name}-{label}", width="stretch"):
                    params = {"model": label} if name != "Compare" else {"compare": [label]}
                    st.switch_page(page, query_params=params)
