"""Seed "Improving VAEs", Table 1: the importance-weighted log-likelihood bound of VAE, IWAE, DVAE,
CVAE and beta-VAE (beta = 4) on binarized MNIST, for latent sizes 3, 5, 10, 20 and 200.

MNIST with dynamic binarization (the static Larochelle-Murray set has no labels, which the CVAE
needs; the test set is binarized once with a fixed seed). MLP 784-512-256-z, Adam 1e-3, batch 128.

    python experiments/improving_vaes_table1.py [--epochs 5] [--k 100]
"""
import argparse

from common import save, train

from core import data as datasets
from core.data import DataSpec
from core.config import RunConfig
from core.evaluate import importance_weighted_bound
from core.models import ModelConfig

MODELS = [("VAE", "vae", {}), ("IWAE (k=5)", "iwae", {"k": 5}), ("DVAE (0.05)", "dvae", {"noise": 0.05}),
          ("CVAE", "cvae", {}), ("beta-VAE (4)", "beta-vae", {"beta": 4.0})]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=100, help="importance samples of the evaluation bound")
    parser.add_argument("--latents", default="3,5,10,20,200")
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    steps = args.epochs * -(-len(data.train_x) // 128)
    rows = {}
    for latent in map(int, args.latents.split(",")):
        for label, objective, settings in MODELS:
            config = RunConfig(data=spec, model=ModelConfig(latent_dim=latent), objective=objective, settings=settings)
            t = train(config, data, steps, f"{label} z={latent}")
            bound = importance_weighted_bound(t.snapshot(), data, k=args.k).iwae
            rows.setdefault(label, {})[latent] = round(bound, 2)
            print(f"{label:14s} z={latent:<4d} IW-{args.k} bound {bound:8.2f} nats  ({t.seconds:.0f} s)", flush=True)
    latents = list(next(iter(rows.values())))
    print("\n| model | " + " | ".join(f"z={z}" for z in latents) + " |")
    print("|---|" + "---:|" * len(latents))
    for label, by_latent in rows.items():
        print(f"| {label} | " + " | ".join(f"{by_latent[z]:.2f}" for z in latents) + " |")
    save("improving_vaes_table1", {"epochs": args.epochs, "k": args.k, "steps": steps, "bounds": rows})


if __name__ == "__main__":
    main()
