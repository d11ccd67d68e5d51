"""What one redraw of the live view costs the browser, per kind of element: headless chromium's CPU time
(from /proc) while a real `streamlit run` of a small app redraws one element every second, with new data
each time, as the Train page's live view does while a run trains.

    python bench/redraw_cost.py [--seconds 20]

Elements: the loss curves, KL heatmap and AU/MI as three Plotly figures (built again at every redraw),
the same as the Train page's Vega-Lite charts (dashboard/live_charts.py: one spec each, the data replaced
in place), the KL heatmap as a PNG (core.pictures.kl_heatmap_image), and nothing (the fragment's rerun
alone).
"""
import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sessions import CHROMIUM, FLAGS, descendants, free_port

ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent('''
    import sys, time
    import numpy as np
    import streamlit as st
    import plotly.express as px
    from core import pictures
    from dashboard import live_charts

    KIND = st.query_params.get("kind", "none")

    @st.fragment(run_every=1)
    def live():
        n = int(time.time() * 10) % 1000 + 400  # new data every redraw, as a run that trains
        history = [{{"step": i + 1, "loss": 200.0 / (1 + i / 100) + np.sin(i), "recon": 150.0, "kl": 10.0}}
                   for i in range(n)]
        live = [{{"step": 50 * (i + 1), "kl_per_dim": list(np.abs(np.sin(np.arange(20) + i / 7))), "au": 10,
                  "mi": 2.0, "mi_ceiling": 6.2}} for i in range(n // 50)]
        st.caption(f"{{n}} steps")
        if KIND == "plotly":  # the figures the Train page drew before its charts took data in place
            loss = live_charts.loss_data(history)
            st.plotly_chart(px.line(loss, x="step", y="nats", color="term"), key="loss")
            st.plotly_chart(px.imshow(pictures.kl_values(live), aspect="auto"), key="heat")
            st.plotly_chart(px.line(live_charts.metrics_data(live), x="step", y=["au", "mi"]), key="live")
        elif KIND == "vega":  # the Train page's charts now: one spec each, new data in place
            st.vega_lite_chart(*live_charts.loss_chart(history), width="stretch")
            st.vega_lite_chart(*live_charts.heatmap_chart(live, top=1.0), width="stretch")
            st.vega_lite_chart(*live_charts.metrics_chart(live, dims=20), width="stretch")
        elif KIND == "image":
            st.image(pictures.kl_heatmap_image(live))
    live()
''')


def chromium_seconds(root_pid: int) -> float:
    ticks, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in descendants(root_pid):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    import subprocess
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "redraw_app.py"
        app.write_text(APP.format(root=str(ROOT)))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true",
                                   f"--server.port={port}", "--server.address=127.0.0.1",
                                   "--browser.gatherUsageStats=false"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(4)
            results = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
                root = next(pid for pid in descendants(os.getpid()) if b"chrom" in Path(f"/proc/{pid}/cmdline").read_bytes()
                            and b"--type=" not in Path(f"/proc/{pid}/cmdline").read_bytes())
                for kind in ("none", "plotly", "vega", "image"):
                    page = browser.new_page(viewport={"width": 1200, "height": 1400})
                    page.goto(f"http://127.0.0.1:{port}/?kind={kind}")
                    page.get_by_text("steps").first.wait_for(timeout=60_000)
                    page.wait_for_timeout(3000)  # first draw and warm-up
                    before, start = chromium_seconds(root), time.perf_counter()
                    page.wait_for_timeout(args.seconds * 1000)
                    used, wall = chromium_seconds(root) - before, time.perf_counter() - start
                    results[kind] = used / wall
                    page.close()
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(f"{'element':<8}{'chromium cores':>16}{'ms per redraw':>15}   (one redraw a second, {args.seconds:g} s each)")
    for kind, cores in results.items():
        print(f"{kind:<8}{cores:>16.3f}{cores * 1000:>15.0f}")


if __name__ == "__main__":
    main()
