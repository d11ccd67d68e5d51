"""VAE Lab: train VAEs live, explore their latent space, diagnose posterior collapse.
Run with `./lab` (or `streamlit run dashboard/app.py` from the project root)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="VAE Lab", layout="wide")
pages = [
    st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="train", default=True),
    st.Page("views/explore.py", title="Explore", icon=":material/tune:", url_path="explore"),
]
st.navigation(pages).run()
