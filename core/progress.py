"""Progress bars: tqdm's, made quiet when nobody watches them."""
from __future__ import annotations

import sys

from tqdm import tqdm

REDIRECTED_EVERY = 60.0  # seconds between a bar's lines in a log file


def bar(**options) -> tqdm:
    """A tqdm bar. Written to a terminal it redraws in place; written to a file or a pipe (nohup, a CI log, a
    notebook's captured stderr) every redraw would be one more line, so it writes one a minute, and the last."""
    if not sys.stderr.isatty():
        options = {"mininterval": REDIRECTED_EVERY, "maxinterval": REDIRECTED_EVERY} | options
        options.pop("dynamic_ncols", None)
    return tqdm(**options)
