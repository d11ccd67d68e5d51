"""The figures of seed 004, "Bridging the ELBO and MMD", from the models experiments/mu_vae_probe.py
trained (run it first): Fig. 2 / 8 (training curves), Fig. 3 (t-SNE of the test codes, both datasets),
Figs. 6 / 10 (prior samples at sigma = 1 for VAE and beta-VAE, 3 for the mu-VAEs) and Figs. 7 / 9
(traversals of every latent dimension in 40 steps over +-2, +-2, +-10 and +-20). PNGs in docs/figures/.

    python experiments/figures_mu_vae.py
"""
import json

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, model_path, save_figure  # noqa: E402

from core import checkpoint, explore  # noqa: E402
from core import data as datasets  # noqa: E402
from core.data import DataSpec  # noqa: E402
from dashboard.plots import image_grid  # noqa: E402

MODELS = ("VAE", "beta-VAE", "mu-VAE#1", "mu-VAE#2")
SIGMA = {"VAE": 1.0, "beta-VAE": 1.0, "mu-VAE#1": 3.0, "mu-VAE#2": 3.0}      # Figs. 6 / 10
REACH = {"VAE": 2.0, "beta-VAE": 2.0, "mu-VAE#1": 10.0, "mu-VAE#2": 20.0}     # Figs. 7 / 9
DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def curves(cells):
    keys = [("mse", "reconstruction (squared error)"), ("kl", "KL (eq. 3)"),
            ("classifier_accuracy", "classifier accuracy (train batches)"), ("mu_regularizer", "mu-VAE regularizer")]
    for name, title in DATASETS.items():
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
        for model in MODELS:
            cell = cells.get(f"{name} {model}")
            if not cell:
                continue
            every = cell["curve_every"]
            for ax, (key, label) in zip(axes, keys):
                values = cell["curves"][key]
                if values:
                    ax.plot([every * (i + 1) for i in range(len(values))], values, label=model)
                ax.set_title(label, fontsize=9)
                ax.set_xlabel("step")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{title}: training curves, means over {every} steps")
        fig.tight_layout()
        save_figure(fig, f"mu_vae_curves_{name}.png")


def tsne(bundles, sets):
    fig, axes = plt.subplots(len(DATASETS), 4, figsize=(16, 8))
    for row, name in enumerate(DATASETS):
        for col, model in enumerate(MODELS):
            ax = axes[row][col]
            ax.set_xticks([]), ax.set_yticks([])
            bundle = bundles.get((name, model))
            if bundle is None:
                continue
            m = explore.latent_map(bundle, sets[name], "tsne", n=2000)
            xy = np.asarray(m.coords)
            ax.scatter(xy[:, 0], xy[:, 1], c=m.labels, cmap="tab10", s=3)
            ax.set_title(f"{DATASETS[name]}: {model}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "mu_vae_tsne.png")


def pictures(bundles, sets):
    for name in DATASETS:
        samples, rows = [], []
        for model in MODELS:
            bundle = bundles.get((name, model))
            if bundle is None:
                continue
            g = torch.Generator().manual_seed(0)
            z = SIGMA[model] * torch.randn(64, bundle.latent_dim, generator=g)
            samples.append(image_grid(explore.decode(bundle.network, z), nrow=8))
            reach = REACH[model]
            values = [-reach + 2 * reach * i / 39 for i in range(40)]
            grid = explore.traversal(bundle.network, [0.0] * bundle.latent_dim, list(range(bundle.latent_dim)), values)
            rows.append((model, reach, image_grid(grid, nrow=40)))
        if samples:
            fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4.3))
            for ax, picture, model in zip(axes, samples, MODELS):
                ax.imshow(picture), ax.axis("off"), ax.set_title(f"{model} (sigma = {SIGMA[model]:g})", fontsize=10)
            fig.suptitle(f"{DATASETS[name]}: decoded z ~ N(0, sigma^2 I)")
            fig.tight_layout()
            save_figure(fig, f"mu_vae_samples_{name}.png")
        if rows:
            fig, axes = plt.subplots(len(rows), 1, figsize=(16, 4.3 * len(rows)))
            for ax, (model, reach, picture) in zip(axes, rows):
                ax.imshow(picture), ax.axis("off"), ax.set_title(f"{model}: each dimension over [-{reach:g}, {reach:g}]", fontsize=10)
            fig.tight_layout()
            save_figure(fig, f"mu_vae_traversals_{name}.png")


def main():
    cells = json.loads((RESULTS / "mu_vae_probe.json").read_text())["cells"]
    curves(cells)
    bundles, sets = {}, {}
    for name in DATASETS:
        sets[name] = datasets.load(DataSpec(name))
        for model in MODELS:
            path = model_path("mu_vae_probe", f"{name} {model}")
            if checkpoint.paths(path)[1].exists():
                bundles[(name, model)] = checkpoint.load(path)
    pictures(bundles, sets)
    tsne(bundles, sets)


if __name__ == "__main__":
    main()
