"""VAE Lab: train VAEs live, explore their latent space, diagnose posterior collapse.
Run with `./lab` or `vaelab` (the package installed: pip install -e .)."""
import hashlib
import hmac
import time

import streamlit as st
import torch

from core import settings
from core.errors import LabError
from dashboard.state import keep_widget_values, owner, pool

HEARTBEAT = 20  # seconds between a page's "still here"; the pool saves and ends the runs of a session gone quiet


def heartbeat():
    pool().touch(owner())


def signed_in() -> bool:
    """With $VAELAB_PASSWORD set, a browser session sees nothing (not even its own token) until it gives the
    password: a server on a class's network, not the whole network's."""
    password = settings.get().password
    if not password or st.session_state.get("signed-in"):
        return True
    st.title("VAE Lab")
    typed = st.text_input("Password", type="password", max_chars=256, key="password",
                          help="The person who runs this server set one; ask them.")
    if typed and hmac.compare_digest(hashlib.sha256(typed.encode()).digest(), hashlib.sha256(password.encode()).digest()):
        st.session_state["signed-in"] = True
        st.session_state.pop("password", None)
        st.rerun()
    if typed:
        time.sleep(1)  # one guess a second per session
        st.error("That is not this server's password.")
    return False


def main():
    # Training runs in child processes with their own threads. The pages only decode a few images, and one
    # thread does that without waking (and spinning) a pool that would compete with training for the cores.
    torch.set_num_threads(1)
    st.set_page_config(page_title="VAE Lab", layout="wide")
    try:
        settings.get()  # the operator's settings, read once here: a value that cannot be read is one line
    except LabError as e:
        st.error(f"This server's settings: {e}")
        return
    if not signed_in():
        return
    keep_widget_values()
    owner()  # this session's token, in the URL, before any page reads its runs
    st.fragment(run_every=HEARTBEAT)(heartbeat)()
    pages = [
        st.Page("views/train.py", title="Train", icon=":material/model_training:", url_path="train", default=True),
        st.Page("views/explore.py", title="Explore", icon=":material/tune:", url_path="explore"),
        st.Page("views/latent_map.py", title="Latent map", icon=":material/scatter_plot:", url_path="map"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("views/sweeps.py", title="Sweeps", icon=":material/grid_on:", url_path="sweeps"),
        st.Page("views/gallery.py", title="Gallery", icon=":material/photo_library:", url_path="gallery"),
    ]
    page = st.navigation(pages)
    with st.sidebar:
        present = st.toggle("Presentation mode", value=st.query_params.get("present") == "1", key="present",
                            help="Large type for a projector; the link keeps it (?present=1).")
    if present:
        st.query_params["present"] = "1"
        st.html("<style>html { font-size: 22px; } h1 { font-size: 3.2rem !important; } "
                "[data-testid='stMarkdownContainer'] p, label p { font-size: 1.15rem !important; }</style>")
    else:
        st.query_params.pop("present", None)
    page.run()


# Streamlit runs this script as __main__. A training child process started by multiprocessing's spawn (where
# there is no fork server) imports it too, as __mp_main__, because it is the parent's main module: it must
# not build the app or take its one thread.
if __name__ == "__main__":
    main()
