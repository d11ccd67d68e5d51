"""The figures of seed 002, "Improving Variational Autoencoders", from the models the table scripts
trained (run experiments/improving_vaes_table1.py and improving_vaes_frey.py first):
  Fig. 1     the training lower bound of VAE, VAE tuned and VAE CNN against epochs (z = 3)
  Figs. 5-6  reconstructions and prior samples of every model at z = 3 (the CVAE's samples are ones)
  Figs. 3-4  Frey Faces reconstructions and samples at z = 5 (the paper's Adagrad, and Adam)
PNGs in docs/figures/.

    python experiments/figures_improving_vaes.py
"""
import json

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, model_path, save_figure  # noqa: E402

from core import checkpoint  # noqa: E402
from core import data as datasets  # noqa: E402
from core.data import DataSpec  # noqa: E402
from core.evaluate import eval_split  # noqa: E402
from dashboard.plots import image_grid  # noqa: E402

ROWS = ("VAE implementation", "VAE tuned", "VAE CNN", "IWAE", "DVAE", "CVAE", "beta-VAE")  # the paper's order


def bundle_of(table: str, key: str):
    cells = json.loads((RESULTS / f"{table}.json").read_text())["cells"]
    cell = cells.get(key)
    if cell is None:
        return None
    path = model_path(table, f"{key} {cell.get('variant', '')}" if table.endswith("table1") else key)
    return checkpoint.load(path) if checkpoint.paths(path)[1].exists() else None


def smoothed(history, n=50):
    """(step at the end of each bin of n steps, the mean lower bound of the rows in it): a saved history is
    thinned past step 1,000, so rows are binned by their step, not counted."""
    bins = {}
    for r in history:
        bins.setdefault((r["step"] - 1) // n, []).append(-r["loss"])
    return [(n * (b + 1), sum(v) / len(v)) for b, v in sorted(bins.items())]


def lower_bound_curves():
    fig, ax = plt.subplots(figsize=(7, 4))
    for row in ("VAE implementation", "VAE tuned", "VAE CNN"):
        bundle = bundle_of("improving_vaes_table1", f"{row} z=3")
        if bundle is None:
            continue
        per_epoch = -(-bundle.n_train // bundle.config.batch_size)
        curve = smoothed(bundle.history)
        ax.plot([step / per_epoch for step, _ in curve], [value for _, value in curve], label=row)
    ax.set_xlabel("epoch"), ax.set_ylabel("training lower bound (nats, mean over 50 steps)")
    ax.set_ylim(-250, None), ax.legend(), ax.set_title("z = 3")
    save_figure(fig, "improving_vaes_lower_bound.png", dpi=90)


def pictures(keys, data, n, name, title, y_for_samples=None):
    """Rows of reconstructions and of prior samples, one per (label, table, cell key)."""
    x, y = eval_split(data, n)
    recon, samples, labels = [image_grid(data.to_image(x), nrow=n)], [], ["test images"]
    for label, table, key in keys:
        bundle = bundle_of(table, key)
        if bundle is None:
            continue
        labels.append(label)
        with torch.no_grad():
            recon.append(image_grid(data.to_image(bundle.network.reconstruct(x, y if bundle.network.cfg.n_classes else None)), nrow=n))
            g = torch.Generator().manual_seed(0)
            wanted = torch.full((n,), y_for_samples) if bundle.network.cfg.n_classes and y_for_samples is not None else None
            samples.append(image_grid(data.to_image(bundle.network.sample(n, generator=g, y=wanted)), nrow=n))
    for kind, grids, names in (("reconstructions", recon, labels), ("samples", samples, labels[1:])):
        fig, axes = plt.subplots(len(grids), 1, figsize=(n * 0.6, 0.75 * len(grids) + 0.4), squeeze=False)
        for ax, grid, label in zip(axes[:, 0], grids, names):
            ax.imshow(grid, cmap="gray"), ax.set_xticks([]), ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        fig.suptitle(f"{title}: {kind}", fontsize=10)
        fig.tight_layout()
        save_figure(fig, f"{name}_{kind}.png", dpi=90)


def main():
    lower_bound_curves()
    mnist = datasets.load(DataSpec("mnist", binarize="invert-nonzero"))
    pictures([(row, "improving_vaes_table1", f"{row} z=3") for row in ROWS], mnist, 12, "improving_vaes_z3",
             "binarized MNIST, z = 3 (CVAE samples: ones)", y_for_samples=1)
    frey = datasets.load(DataSpec("frey"))
    pictures([("Adagrad", "improving_vaes_frey", "z=5"), ("Adam", "improving_vaes_frey_adam", "z=5")], frey, 12,
             "improving_vaes_frey_z5", "Frey Faces, z = 5")


if __name__ == "__main__":
    main()
