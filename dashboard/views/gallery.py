"""Gallery: every checkpoint on disk, with a thumbnail, opened in any page with one click."""
import streamlit as st

from core import explore
from core.errors import LabError
from dashboard import plots
from dashboard.state import checkpoint_dir, checkpoint_files, load_checkpoint, load_data

PAGES = {"Explore": "views/explore.py", "Latent map": "views/latent_map.py", "Compare": "views/compare.py"}


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(path: str, mtime: float):
    ck = load_checkpoint(path)
    data = load_data(ck.config.data)
    return plots.image_grid(data.to_image(explore.prior_samples(ck.model, 16)), nrow=8)


st.title("Gallery")
st.caption(f"Checkpoints in `{checkpoint_dir()}`: the shipped models and the runs you saved from the Train page. "
           "The thumbnails are samples from each model's prior.")
files = checkpoint_files()
if not files:
    st.info("No checkpoints yet. Press **Save** on a run in the Train page, or train one from the command line: "
            "`./lab core train --dataset mnist --epochs 5`.")
    st.stop()
for row in range(0, len(files), 3):
    for col, path in zip(st.columns(3), files[row:row + 3]):
        label = f"file: {path.relative_to(checkpoint_dir()).with_suffix('')}"
        with col.container(border=True):
            st.markdown(f"**{label[6:]}**")
            try:
                ck = load_checkpoint(path)
                st.image(thumbnail(str(path), path.stat().st_mtime), width="stretch")
                st.caption(f"{ck.config.objective} on {ck.config.data.name} · z={ck.config.model.latent_dim} · "
                           f"step {ck.step:,}")
            except LabError as e:
                st.error(str(e))
                continue
            for button, (name, page) in zip(st.columns(len(PAGES)), PAGES.items()):
                if button.button(name, key=f"open-{name}-{label}", width="stretch"):
                    params = {"model": label} if name != "Compare" else {"compare": [label]}
                    st.switch_page(page, query_params=params)
