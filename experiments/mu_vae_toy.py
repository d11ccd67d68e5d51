"""Seed 004, "Bridging the ELBO and MMD" (Ucar 2019), Fig. 1: where the toy model of its Table 2 puts
the MNIST test digits in its 2-D latent, for Tanh, ReLU and LeakyReLU (0.2) networks, trained with
the ELBO, the ELBO with latent clipping, and the mu-VAE objective with latent clipping (c = 3).

Table 2: MLP 784-512-512-512-2 and back, a sigmoid output. Appendix B: the squared error as the
reconstruction loss, Adam 1e-4, batch 64. One 3 x 3 picture of the posterior means, in
docs/figures/mu_vae_toy.png; the runs' numbers in experiments/results/mu_vae_toy.json.

    python experiments/mu_vae_toy.py [--epochs 2]
"""
import argparse

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import Cells, save_figure, train  # noqa: E402

from core import data as datasets  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.data import DataSpec  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.models import ModelConfig  # noqa: E402

ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "LeakyReLU": "leaky-relu"}  # the paper's columns
OBJECTIVES = {"ELBO": ("vae", {}, 0.0), "ELBO + clipping": ("vae", {}, 3.0),
              "mu-VAE + clipping": ("mu-vae", {"clip": 3.0}, 3.0)}  # its rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--n", type=int, default=5000, help="test digits drawn")
    args = parser.parse_args()
    data = datasets.load(DataSpec("mnist"))
    steps = round(args.epochs * -(-len(data.train_x) // 64))
    cells = Cells("mu_vae_toy", epochs=args.epochs)
    fig, axes = plt.subplots(3, 3, figsize=(12, 12))
    x, y = data.test_x[:args.n], data.test_y[:args.n]
    for col, (act_name, act) in enumerate(ACTIVATIONS.items()):
        for row, (obj_name, (objective, settings, clip)) in enumerate(OBJECTIVES.items()):
            model = ModelConfig(hidden=(512, 512, 512), activation=act, leaky_slope=0.2, latent_dim=2,
                                likelihood="mse", latent_clip=clip)
            config = RunConfig(data=DataSpec("mnist"), model=model, objective=objective, settings=settings,
                               batch_size=64, lr=1e-4)
            t = train(config, data, steps, f"{act_name} {obj_name}")
            bundle = t.snapshot()
            with torch.no_grad():
                mu = bundle.posterior(x, y).mean
            ev = evaluate(bundle, data)
            cells.put(f"{act_name} {obj_name}", {"test_recon": round(ev.recon, 2), "test_kl": round(ev.kl, 2),
                                                  "mean_norm": round(mu.norm(dim=1).mean().item(), 3),
                                                  "steps": t.step_count, "train_seconds": round(t.seconds, 1),
                                                  "diverged": t.diverged})
            ax = axes[row][col]
            ax.scatter(mu[:, 0], mu[:, 1], c=y, cmap="tab10", s=2)
            ax.set_title(f"{act_name}, {obj_name}", fontsize=10)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Posterior means of {args.n:,} MNIST test digits ({args.epochs:g} epochs; colour = digit)")
    fig.tight_layout()
    save_figure(fig, "mu_vae_toy.png", dpi=70)


if __name__ == "__main__":
    main()
