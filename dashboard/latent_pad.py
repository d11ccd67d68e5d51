"""The Explore sliders and their picture as one Streamlit component (st.components.v2), so the picture
follows a drag while it happens. Streamlit's own slider reruns the app only on release.

An MLP decoder travels to the browser once per model version as float32 bytes (core.explore.
decoder_program) and the browser decodes every move; any other decoder is decoded here, from the codes
the browser sends at most every THROTTLE_MS while dragging. Either way the code comes back on release."""
from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import streamlit as st

from core import explore
from dashboard import plots
from dashboard.state import presenting

THROTTLE_MS = 50  # a server-decoded drag asks for at most 20 pictures a second

_CSS = """
.pad { display: flex; gap: 1.5rem; align-items: flex-start; font-family: inherit; color: var(--st-text-color); }
.sliders { flex: 3; display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: .5rem 1.2rem; }
.dim { display: grid; grid-template-columns: 5.5em 1fr 3.2em; align-items: center; gap: .4rem; font-size: .85rem; }
.dim input { width: 100%; accent-color: var(--st-primary-color); }
.dim.inactive span { opacity: .5; }
.dim output { font-variant-numeric: tabular-nums; min-width: 3.2em; text-align: right; }
.view { flex: 2; text-align: center; }
.view canvas, .view img { width: 100%; max-width: var(--pad-picture, 256px); image-rendering: pixelated; border-radius: 4px; }
.caption { font-size: .8rem; opacity: .6; }
"""

_PAD = st.components.v2.component("vaelab_latent_pad", css=_CSS,
                                  js=(Path(__file__).with_name("latent_pad.js")).read_text())


def program_payload(program: explore.DecoderProgram) -> tuple[dict, str]:
    """The program as JSON (shapes, activations, offsets into the buffer) and one little-endian float32
    buffer, base64-encoded."""
    parts, layers, at = [], [], 0
    for w, b, act in program.layers:
        layers.append({"out": int(w.shape[0]), "in": int(w.shape[1]), "act": act, "w": at, "b": at + w.size})
        parts += [w.ravel(), b.ravel()]
        at += w.size + b.size
    offset = None
    if program.offset is not None:
        offset = at
        parts.append(program.offset.ravel())
    buffer = base64.b64encode(np.concatenate(parts).astype("<f4").tobytes()).decode()
    return {"layers": layers, "squash": program.squash, "shape": list(program.shape), "scale": program.scale,
            "offset": offset}, buffer


@st.cache_data(max_entries=16, show_spinner=False)
def _payload(ref: tuple, label: int | None, with_data: bool, _network, _data) -> tuple[dict, str] | None:
    """Once per model version and label: the decoder as the browser runs it."""
    program = explore.decoder_program(_network, label, _data)
    return None if program is None else program_payload(program)


def latent_pad(bundle, ranges, start: list[float], hide_inactive: bool, y, data, decode_image,
               key: str, in_browser: bool = True):
    """Sliders for a Gaussian latent with the decoded picture beside them; returns the code on the
    server (the start, until the first release) and the server's picture of it. data: the model's
    dataset or None (a mean-normalized model needs it to show pixels). decode_image(code) -> a
    (1, C, H, W) picture in [0, 1], decoded once per rerun; it is also what the browser shows where it
    cannot decode itself (or in_browser is False)."""
    d = bundle.latent_dim
    dims = []
    for i in range(d):
        low, high = min(ranges.low[i], start[i]), max(ranges.high[i], start[i])
        help = ("Range: the aggregate posterior's mean ± 3 std." if ranges.from_data else
                "Range: the prior's ± 3 (the dataset is not here to say where real codes lie).")
        dims.append({"label": f"z{i}" + ("" if ranges.active[i] else " (inactive)"), "low": float(low),
                     "high": float(high), "active": bool(ranges.active[i]),
                     "hidden": bool(hide_inactive and not ranges.active[i]),
                     "help": help + ("" if ranges.active[i] else " Inactive: E_q[z] barely varies with x.")})
    state = st.session_state.get(key)
    code = list(state["z"]) if state and state.get("z") and len(state["z"]) == d else list(start)
    payload = _payload(bundle.ref.key, y, data is not None, bundle.network, data) if in_browser else None
    # The browser builds the sliders again (from the code now) only when this key changes.
    data = {"key": f"{key}/{'hide' if hide_inactive else 'all'}", "dims": dims, "code": code, "throttle_ms": THROTTLE_MS,
            "picture_px": 512 if presenting() else 256}
    image = decode_image(code)
    if payload is not None:
        data["program"], data["weights"] = payload  # base64: the component's data must be JSON
    else:
        data["program"], data["image"] = None, plots.png_data_uris(image, scale=1)[0]
    _PAD(key=key, data=data, default={"z": list(start)}, on_z_change=lambda: None)
    return code, image
