"""Does the first UMAP of a server wait on the background warm-up (dashboard.state.warm_up)?

Numba compiles under one process-wide lock, so a map asked for while the warm-up thread compiles waits
for that thread. With the machine's cores busy (two busy-loop processes stand in for a training run),
this times a foreground UMAP of 5,000 codes started one second after the warm-up, with the warm-up thread
at a given nice value.

    python bench/umap_warm_up.py [--nice 0 19]

Run it in a fresh environment per value: each run compiles from scratch (only numba's on-disk cache is
shared, and the nearest-neighbour-descent kernels are not cached).
"""
import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(nice: int) -> float:
    import numpy as np
    from core import explore
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        def work():
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            explore.warm_up_umap()
        t0 = time.perf_counter()
        threading.Thread(target=work, daemon=True).start()
        time.sleep(1)
        import umap
        codes = np.random.default_rng(1).standard_normal((5000, 16)).astype(np.float32)
        umap.UMAP(random_state=0).fit_transform(codes)
        return time.perf_counter() - t0
    finally:
        for b in burners:
            b.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nice", type=int, nargs="+", default=[0, 19])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(f"{one(args.one):.1f}")
        return
    print("| warm-up thread's nice | foreground UMAP of 5,000 codes, cores busy |\n| ---: | ---: |")
    for nice in args.nice:  # a process each: numba's compiled kernels stay in the process that compiled them
        out = subprocess.run([sys.executable, __file__, "--one", str(nice)], capture_output=True, text=True, check=True)
        print(f"| {nice} | {out.stdout.split()[-1]} s |", flush=True)


if __name__ == "__main__":
    main()
