"""Many people on one dashboard server: N browser sessions (headless chromium contexts, Playwright)
against one real `streamlit run`, each pressing Train on the Train page at once.

The server trains at most LIMIT runs at once ($VAELAB_MAX_RUNS); the others queue. The script waits
until every session's run is finished, and reports the time that took, how many sessions saw their run wait in the queue,
and the server's memory: the proportional set size (PSS, shared pages counted once across processes) of
the server and every training process under it, sampled every 0.2 s, its peak and its value at the end
(once every run has released its process).

    python bench/sessions.py [--sessions 8] [--limit 2] [--steps 300]
"""
import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(env: dict, port: int | None = None, log: Path | None = None, root: Path = ROOT):
    """A real `streamlit run` of the dashboard; yields (its base URL, its process). root: the checkout to
    serve (another one, an earlier commit's worktree say, runs its own code: it goes first on the path)."""
    port = port or free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    if root != ROOT:
        env = {**env, "PYTHONPATH": str(root)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(root / "dashboard" / "app.py"),
                               "--server.headless=true", f"--server.port={port}", "--server.address=127.0.0.1",
                               "--browser.gatherUsageStats=false"], cwd=root, env={**os.environ, **env},
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("streamlit did not come up within 90 s") from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if log:
            out.close()


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return found


def tree_pss(pid: int) -> int:
    """Bytes of PSS of a process and all its descendants (Linux)."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total


def wait_for_text(page, text, timeout_s: float) -> bool:
    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_s * 1000)
        return True
    except Exception:
        return False


def load(url: str, server_pid: int, sessions: int, steps: int, timeout_s: float = 600) -> dict:
    """Open `sessions` browser sessions, press Train in each, wait until all runs are finished."""
    from playwright.sync_api import sync_playwright
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.wait(0.2):
            peak[0] = max(peak[0], tree_pss(server_pid))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = {"sessions": sessions, "steps": steps}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            pages = []
            for _ in range(sessions):
                page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
                page.goto(url)
                page.get_by_text("then press Train").wait_for(timeout=120_000)
                field = page.get_by_role("spinbutton", name="Steps")
                field.fill(str(steps))
                field.press("Enter")
                page.wait_for_timeout(500)
                pages.append(page)
            t0 = time.time()
            for page in pages:  # as close to together as one driver can
                page.get_by_role("button", name="Train").click()
            queued = sum(wait_for_text(page, re.compile("Waiting for a free training process"), 3) for page in pages)
            finished = re.compile(rf"step {steps:,} .*recorded")
            done = sum(wait_for_text(page, finished, max(1.0, timeout_s - (time.time() - t0)))
                       for page in pages)
            result.update(finished=done, saw_the_queue=queued, seconds=time.time() - t0)
            result["tokens"] = [page.url.split("session=")[1].split("&")[0] for page in pages]
            result["panels"] = [page.locator("text=/· recorded/").count() for page in pages]
            result["tracebacks"] = sum(page.locator("[data-testid='stException']").count() for page in pages)
        finally:
            browser.close()
    time.sleep(1.0)
    stop.set()
    sampler.join()
    result.update(peak_pss=peak[0], end_pss=tree_pss(server_pid))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--limit", type=int, default=2, help="training processes at once (VAELAB_MAX_RUNS)")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {"VAELAB_RUNS": f"{folder}/runs", "VAELAB_CHECKPOINTS": f"{folder}/checkpoints",
               "VAELAB_MAX_RUNS": str(args.limit), "VAELAB_OFFLINE": "1"}
        with serve(env, log=Path(folder) / "server.log") as (url, server):
            idle = tree_pss(server.pid)
            r = load(url, server.pid, args.sessions, args.steps)
        folders = sorted(p.name for p in Path(folder, "runs").iterdir())
    print(f"{r['sessions']} sessions, at most {args.limit} training at once, {args.steps} steps each: "
          f"{r['finished']}/{r['sessions']} finished in {r['seconds']:.0f} s; {r['saw_the_queue']} saw the queue")
    print(f"server memory (PSS, server + training processes): idle {idle / 2**20:.0f} MiB, peak "
          f"{r['peak_pss'] / 2**20:.0f} MiB, after every run finished {r['end_pss'] / 2**20:.0f} MiB")
    print(f"run panels per page {r['panels']}; session folders {len(folders)}; tracebacks {r['tracebacks']}")
    return 0 if r["finished"] == r["sessions"] and r["tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
