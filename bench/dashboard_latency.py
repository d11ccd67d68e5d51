"""Dashboard latency, server side, on the CPU: the four targets of the dashboard.

  slider     a slider change -> the decoded image: the slider fragment's work (decode the code, make the
             picture, encode it as PNG as st.image does), p50/p95 over 300 random codes; and, as an upper
             bound, a full rerun of the Explore page in Streamlit's AppTest after a slider change.
  page       switching to each page (AppTest switch_page + run), median of 5.
  umap       a UMAP map of 10,000 MNIST test codes: cold (not cached; the numba kernels compiled by the
             start-up warm-up, as in the app) and from the cache (the Latent map page's second view).
  interaction, live   in a real browser while runs train: see bench/interaction.py.
  training   samples per second of a run trained from the Train page, against the same run trained
             alone (the CLI's loop), at equal steps. Server side: AppTest reruns the whole page every 2 s
             (the browser reruns only the live fragment: an upper bound). End to end: a real `streamlit
             run` with headless chromium watching the page on the same machine.

The model is the CLI's default (MLP 784-512-256-20) trained briefly on MNIST with dynamic binarization.

    python bench/dashboard_latency.py [--steps 2000]
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import checkpoint, explore
from core import data as datasets
from core.config import RunConfig
from core.engine import Trainer
from dashboard import plots

ROOT = Path(__file__).resolve().parent.parent

APP = str(ROOT / "dashboard" / "app.py")
THREADS = torch.get_num_threads()  # what a training process gets: a fresh interpreter's count


def pct(values, q):
    return float(np.percentile(values, q))


def app_test(**query):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(APP, default_timeout=300)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="steps of the training comparison")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of the training comparison")
    parser.add_argument("--only", choices=["slider", "page", "umap", "training", "interaction", "live"],
                        help="measure one thing")
    parser.add_argument("--moves", type=int, default=12, help="interaction: Step-slider moves in each condition")
    parser.add_argument("--seconds", type=float, default=60, help="live: how long to watch the live panel")
    parser.add_argument("--against", type=Path, help="interaction, live: another checkout to measure side by side "
                                                      "(an earlier commit's git worktree)")
    parser.add_argument("--refresh", type=int, nargs="+", default=[2, 5, 10], choices=[1, 2, 5, 10],
                        help="the live view's refresh periods to train in the browser at (seconds)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.only in ("interaction", "live"):  # a real server and browser, on the shipped checkpoints
        import interaction
        if args.only == "interaction":
            interaction.interaction(args.moves, args.against)
        else:
            interaction.live(args.seconds, args.against)
        return
    spec = datasets.DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    config = RunConfig(data=spec, device="cpu")
    trainer = Trainer(config, data)
    trainer.step(500)
    folder = Path(tempfile.mkdtemp())
    os.environ["VAELAB_CHECKPOINTS"] = str(folder)
    trainer.save(folder / "mnist-vae")
    model = checkpoint.load(folder / "mnist-vae")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model MLP 784-512-256-20 on "
          f"{len(data.train_x):,} MNIST images")

    wanted = [args.only] if args.only else ["slider", "page", "umap", "training"]
    if "slider" in wanted:
        slider(model, data)
    if "page" in wanted:
        page_switches()
    if "umap" in wanted:
        umap_map()
    if "training" in wanted:
        training(config, data, args.steps, args.repeats, args.refresh)


def slider(model, data):
    """Slider change -> decoded image."""
    ranges = explore.latent_ranges(model, data)
    gen = np.random.default_rng(0)
    times = []
    for _ in range(300):
        code = [gen.uniform(lo, hi) for lo, hi in zip(ranges.low, ranges.high)]
        start = time.perf_counter()
        image = data.to_image(explore.decode(model.network, code))
        picture = plots.image_grid(image, nrow=1, scale=max(1, 256 // image.shape[-1]))
        Image.fromarray(picture).save(io.BytesIO(), format="PNG")
        times.append(time.perf_counter() - start)
    print(f"slider -> image (fragment work): p50 {1e3 * pct(times, 50):.1f} ms, p95 {1e3 * pct(times, 95):.1f} ms")
    at = app_test(model="file: mnist-vae")
    at.switch_page("views/explore.py").run()
    reruns = []
    for i in range(20):
        reruns.append(timed(lambda: at.slider(key=f"z-0@{model.ref.id}").set_value(float(ranges.low[0] + i * 0.1)).run()))
    print(f"slider -> image (whole Explore page rerun): p50 {1e3 * pct(reruns, 50):.0f} ms, "
          f"p95 {1e3 * pct(reruns, 95):.0f} ms")


def page_switches():
    """Switching to each page."""
    at = app_test(model="file: mnist-vae")
    pages = {"Explore": "views/explore.py", "Latent map": "views/latent_map.py", "Compare": "views/compare.py",
             "Gallery": "views/gallery.py", "Train": "views/train.py"}
    for name, page in pages.items():
        at.switch_page(page).run()  # the first view computes what the page caches
    for name, page in pages.items():
        runs = [timed(lambda: at.switch_page(page).run()) for _ in range(5)]
        print(f"page switch to {name:<10}: median {1e3 * statistics.median(runs):.0f} ms (max {1e3 * max(runs):.0f})")


def umap_map():
    """A UMAP of 10,000 codes, cold and cached."""
    print("compiling UMAP's kernels (the app does this in the background when the Latent map page first opens) ...", flush=True)
    warm = timed(explore.warm_up_umap)
    at = app_test(model="file: mnist-vae")
    at.switch_page("views/latent_map.py").run()
    at.selectbox(key="method").set_value("umap")
    at.select_slider(key="n").set_value(10000)
    cold = timed(lambda: at.run())
    cached = timed(lambda: at.run())
    print(f"UMAP of 10,000 codes: cold {cold:.1f} s, from the cache {cached:.2f} s (kernel compile {warm:.0f} s, once)")


def training(config, data, steps: int, repeats: int, refreshes=(2, 5, 10)):
    """Training from the dashboard against training alone, at equal steps."""
    alone_rates, app_rates = [], []
    for r in range(repeats):
        alone = Trainer(config, data)
        alone.step(steps)
        alone_rates.append(steps * alone.batch_size / alone.seconds)
        at = app_test()
        at.sidebar.number_input(key="steps").set_value(steps)
        at.sidebar.selectbox(key="dataset").set_value("mnist")
        at.sidebar.selectbox(key="hidden").set_value("default (512, 256)")
        at.sidebar.slider(key="latent").set_value(20)
        at.sidebar.button[0].click().run()
        from dashboard.state import pool
        run = pool().runs(at.session_state["owner"])["vae"]  # the session's run, in the server's pool
        while run.state not in ("recorded", "done", "stopped", "failed", "diverged", "interrupted"):
            time.sleep(2.0)
            at.run()  # the whole page, where the browser would rerun only the live fragment
        app_rates.append(steps * run.batch_size / run.history[-1]["seconds"])  # the run's own clock, pauses excluded
        assert run.threads == THREADS, f"the training process ran {run.threads} threads, not {THREADS}"
        run.stop()  # end its process, which would otherwise idle on through the next measurements
        print(f"  repeat {r + 1}: alone {alone_rates[-1]:,.0f} samples/s, Train page in AppTest {app_rates[-1]:,.0f}",
              flush=True)
    a, w = statistics.median(alone_rates), statistics.median(app_rates)
    print(f"training {steps} steps, server side: alone {a:,.0f} samples/s, from the Train page rerun every 2 s "
          f"{w:,.0f}: overhead {100 * (a / w - 1):+.1f}% (medians of {repeats})")
    for refresh in refreshes:
        browser = train_in_browser(steps, refresh)
        if browser:
            rate, cores = browser
            print(f"training {steps} steps, end to end: from the Train page in headless chromium on the same "
                  f"machine, redrawing every {refresh} s, {rate:,.0f} samples/s: overhead {100 * (a / rate - 1):+.1f}%; "
                  f"cores used: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()), flush=True)


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each chromium, streamlit server and training process (/proc): pid -> (kind, s)."""
    ticks, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = ("chromium" if "chromium" in cmd else "server" if "streamlit run" in cmd
                else "trainer" if "spawn_main" in cmd or "forkserver" in cmd else None)
        if kind:
            out[int(pid)] = (kind, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def cores_used(before: dict, seen: dict, wall: float) -> dict[str, float]:
    """Cores each kind used between two samplings; `seen` holds each process's last reading, so one that
    ended meanwhile (the training process, once its run is saved) still counts."""
    out = {"chromium": 0.0, "server": 0.0, "trainer": 0.0}
    for pid, (kind, secs) in seen.items():
        out[kind] += secs - before.get(pid, (kind, 0.0))[1]
    return {k: v / wall for k, v in out.items()}


def train_in_browser(steps: int, refresh: int = 2):
    """Train the CLI's default model from the Train page of a real server, watched by headless chromium
    with the live view redrawing every `refresh` seconds; returns the samples/s the page reports when the
    run is done and the cores each process used meanwhile (None without chromium)."""
    import re
    import shutil
    import socket
    import subprocess
    import urllib.request

    chromium = shutil.which("chromium")
    if not chromium:
        print("training in the browser: skipped, no chromium (apt-get install chromium)")
        return None
    from playwright.sync_api import sync_playwright
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.headless=true",
                               f"--server.port={port}", "--server.address=127.0.0.1"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(profile, executable_path=chromium, args=flags,
                                                           headless=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.get_by_text("then press Train").wait_for(timeout=120_000)
            for label, option in [("Dataset", "mnist"), ("MLP widths", "default (512, 256)")]:
                page.get_by_role("combobox", name=label).click()
                page.get_by_role("option", name=option, exact=True).click()
                page.wait_for_timeout(1000)
            page.get_by_role("slider", name="Latent size").focus()
            for _ in range(12):  # 8 -> 20
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(1000)
            field = page.get_by_role("spinbutton", name="Steps")
            field.fill(str(steps))
            field.press("Enter")
            page.wait_for_timeout(1000)
            page.get_by_role("button", name="Train").click()
            before, start = cpu_by_process(), time.perf_counter()
            seen = dict(before)
            if refresh != 2:
                knob = page.get_by_role("slider", name="Refresh every (seconds)")
                knob.focus()
                for _ in range([1, 2, 5, 10].index(refresh) - 1):
                    page.keyboard.press("ArrowRight")
                if refresh == 1:
                    page.keyboard.press("ArrowLeft")
            # this run's line (the page shows the shipped model's recorded run until the new one is up)
            finished = page.get_by_text(re.compile(rf"step {steps:,} .*samples/s · (done|recorded)"))
            while not finished.count() and time.perf_counter() - start < 900:
                seen.update(cpu_by_process())
                page.wait_for_timeout(500)
            seen.update(cpu_by_process())
            text, wall = finished.first.inner_text(), time.perf_counter() - start
            context.close()
        return float(re.search(r"([\d,]+) samples/s", text).group(1).replace(",", "")), cores_used(before, seen, wall)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
