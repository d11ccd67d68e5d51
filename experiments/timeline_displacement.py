"""How far the same test images move between successive frames of a run's latent map, aligned (PCA turned
onto the frame before; t-SNE and UMAP started from its layout) and as each method draws it alone. Reads the
shipped run of the lesson "Watch a dimension collapse"; the distance is the mean move of a point as a
fraction of the later map's spread (core.timeline.displacement).

    VAELAB_DATA=../shared/data python experiments/timeline_displacement.py [--images 1000]
"""
import argparse
import statistics
import time
from pathlib import Path

from common import save

from core import checkpoint, timeline
from core import data as datasets

RUN = Path(__file__).resolve().parent.parent / "checkpoints" / "mnist-kl-annealing-beta8"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()
    bundles = checkpoint.load_steps(RUN)
    data = datasets.load(datasets.DataSpec("mnist", binarize="dynamic"))
    rows = {}
    for method in ("pca", "tsne", "umap"):
        t0 = time.perf_counter()
        aligned = timeline.displacement(timeline.maps_over_time(bundles, data, method, args.images))
        t1 = time.perf_counter()
        alone = timeline.displacement(timeline.maps_over_time(bundles, data, method, args.images, align=False))
        rows[method] = {"aligned": aligned, "alone": alone, "seconds_aligned": t1 - t0,
                        "seconds_alone": time.perf_counter() - t1}
        print(f"{method:>5}: median move aligned {statistics.median(aligned):.3f}, alone {statistics.median(alone):.3f} "
              f"(largest {max(aligned):.3f} against {max(alone):.3f}); sum ratio {sum(aligned) / sum(alone):.2f}; "
              f"{t1 - t0:.1f} s aligned", flush=True)
    save("timeline_displacement", {"run": RUN.name, "steps": [b.step for b in bundles], "images": args.images,
                                   "methods": rows})


if __name__ == "__main__":
    main()
