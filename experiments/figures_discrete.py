"""Figures of seed 003 from discrete_curves.py's results and saved models:

- discrete_curves_mnist.png / discrete_curves_fashion.png (its Figs. 6, 9 and 12): loss, training
  log-likelihood and the gradient variances over training, every logged point marked;
- discrete_reconstructions.png (Figs. 7, 10, 13): test images and their reconstructions from one draw
  z ~ q(z|x), per model;
- discrete_samples.png (Figs. 8 and 11): images decoded from z ~ p(z), per model;
and prints the test of the paper's variance claim (see claim()).

    python experiments/figures_discrete.py
"""
import json

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, model_path, save_figure  # noqa: E402
from discrete_curves import RUNS, TABLE  # noqa: E402

from core import checkpoint  # noqa: E402
from core import data as datasets  # noqa: E402
from core.data import DataSpec  # noqa: E402
from dashboard.plots import image_grid  # noqa: E402

PANELS = [("loss", "loss (-ELBO)"), ("log_likelihood", "E_q[ln p(x|z)]"),
          ("var_weights", "Var of the encoder-weight gradient"), ("var_logits", "Var of the logit gradient"),
          ("q(1-q)", "q(1-q), mean")]


def curves(cells, names, filename, title):
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.2 * len(PANELS), 3.0))
    for name in names:
        rows = [r for r in cells[name]["rows"] if "diverged" not in r]
        for ax, (key, label) in zip(axes, PANELS):
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            ax.plot(*zip(*points), marker="o", markersize=3, label=name)
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("epoch")
            if key.startswith("var"):
                ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, filename)


def pictures(bundles):
    recon, samples = [], []
    for name, bundle in bundles.items():
        data = datasets.load(DataSpec(RUNS[name][0], binarize="dynamic"))
        x = torch.bernoulli(data.test_x[:16], generator=torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        with torch.no_grad():
            z = bundle.network.encode(x).sample()
            recon.append((name, image_grid(torch.cat([x, bundle.network.mean_image(z)]), nrow=16)))
        samples.append((name, image_grid(bundle.network.sample(32, generator=torch.Generator().manual_seed(0)), nrow=16)))
    for filename, panels, what in (("discrete_reconstructions.png", recon, "test images (top), decoded from one z ~ q(z|x)"),
                                   ("discrete_samples.png", samples, "decoded from z ~ p(z)")):
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.3 * len(panels) + 0.4), squeeze=False)
        for ax, (name, picture) in zip(axes[:, 0], panels):
            ax.imshow(picture)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
        fig.suptitle(what, fontsize=10)
        fig.tight_layout()
        save_figure(fig, filename)


def claim(cells):
    """Seed 003's claim, "the variance of the estimator decreases the longer we train", tested on every
    logged point after epoch 0: Spearman's rank correlation of each variance with the epoch (-1: it
    falls at every point), and the last value against the first and the smallest."""
    from scipy.stats import spearmanr
    print("run                  variance      Spearman rho  first -> last (min)")
    for name, cell in cells.items():
        rows = [r for r in cell["rows"] if "diverged" not in r and r["epoch"] > 0]
        for key in ("var_weights", "var_logits", "q(1-q)"):
            values = [r[key] for r in rows]
            rho = spearmanr([r["epoch"] for r in rows], values).statistic if len(rows) > 2 else float("nan")
            print(f"{name:20s} {key:12s} {rho:+8.2f}      {values[0]:.3g} -> {values[-1]:.3g} ({min(values):.3g})")


def main():
    cells = json.loads((RESULTS / f"{TABLE}.json").read_text())["cells"]
    claim(cells)
    mnist = [n for n in RUNS if n in cells and RUNS[n][0] == "mnist"]
    fashion = [n for n in RUNS if n in cells and RUNS[n][0] != "mnist"]
    if mnist:
        curves(cells, mnist, "discrete_curves_mnist.png", "MNIST: seed 003's Figs. 6 and 9")
    if fashion:
        curves(cells, fashion, "discrete_curves_fashion.png", "Fashion-MNIST: seed 003's Fig. 12")
    # The trained models are kept under experiments/models, not committed: the picture figures are
    # redrawn only where every measured run's model is here, so a partial set never replaces them.
    missing = [n for n in RUNS if n in cells and not checkpoint.paths(model_path(TABLE, n))[1].exists()]
    if missing:
        print(f"pictures not redrawn: no trained model here for {', '.join(missing)} "
              f"(rerun discrete_curves.py --only NAME after deleting its cell)")
    elif cells:
        pictures({n: checkpoint.load(model_path(TABLE, n)) for n in RUNS if n in cells})


if __name__ == "__main__":
    main()
