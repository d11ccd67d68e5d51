"""A closed tab's training core, given to the next person: the server's pool (core.pool.Pool) with one
training process, one session's run training, a second session's run queued behind it, then the first
session's tab closed (its browser session ends). Prints how long the queued run waited after the close.

    python bench/closed_tab.py [--grace 30]
    PYTHONPATH=../before python bench/closed_tab.py    # an earlier checkout's pool, for comparison
"""
import argparse
import tempfile
import time
from pathlib import Path

from core import data as datasets
from core.config import RunConfig
from core.control import RunState
from core.models import ModelConfig
from core.pool import Pool


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grace", type=float, default=30.0, help="seconds a closed session's runs may keep their core")
    args = parser.parse_args()
    digits = datasets.load("digits")
    config = RunConfig(data=datasets.DataSpec("digits"), model=ModelConfig(hidden=(64,), latent_dim=4), device="cpu")
    pool = Pool(Path(tempfile.mkdtemp()), limit=1, grace=args.grace)
    open_tabs = {"tab-a", "tab-b"}
    a, b = "a1b2c3d4", "e5f6a7b8"
    pool.claim(a, "tab-a", open_tabs.__contains__)
    pool.claim(b, "tab-b", open_tabs.__contains__)
    first = pool.submit(a, "vae", config, steps=1_000_000, data=digits)
    while first.state != RunState.RUNNING:
        time.sleep(0.05)
    waiting = pool.submit(b, "vae", config, steps=50, data=digits)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # both pages open: the queued run waits, as it should
        pool.touch(a), pool.touch(b)
        assert waiting.state == RunState.QUEUED
        time.sleep(0.2)
    open_tabs.discard("tab-a")  # the first session's tab is closed: its pages stop asking for its runs
    closed = time.monotonic()
    while waiting.state == RunState.QUEUED:
        pool.touch(b)
        time.sleep(0.05)
    waited = time.monotonic() - closed
    print(f"the queued run started {waited:.1f} s after the other session's tab closed (grace {args.grace:.0f} s); "
          f"the closed session's run: {first.state}, {first.error or 'no message'}")
    pool.close()


if __name__ == "__main__":
    main()
