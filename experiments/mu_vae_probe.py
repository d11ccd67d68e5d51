"""Seed mu-VAE ("Bridging the ELBO and MMD"), Table 1: latent-probe accuracy of VAE, beta-VAE (4),
mu-VAE#1 (c = 3) and mu-VAE#2 (c = 6) on MNIST and Fashion-MNIST, latent size 10, conv encoder and
decoder. The probe is the `probe` diagnostic: a logistic regression on the standardized encoder
means, fitted on the training split and scored on the test split.

    python experiments/mu_vae_probe.py [--epochs 3]
"""
import argparse

from common import save, train

from core import data as datasets
from core.data import DataSpec
from core.diagnostics import DIAGNOSTICS
from core.config import RunConfig
from core.models import ModelConfig

MODELS = [("VAE", "vae", {}), ("beta-VAE (4)", "beta-vae", {"beta": 4.0}),
          ("mu-VAE#1 (c=3)", "mu-vae", {"clip": 3.0}), ("mu-VAE#2 (c=6)", "mu-vae", {"clip": 6.0})]
PAPER = {"mnist": [93.42, 62.45, 95.28, 96.44], "fashion-mnist": [78.01, 62.35, 82.71, 84.26]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="a step budget instead of epochs")
    args = parser.parse_args()
    results = {}
    for name in ("mnist", "fashion-mnist"):
        spec = DataSpec(name)
        data = datasets.load(spec)
        steps = args.steps or args.epochs * -(-len(data.train_x) // 128)
        for (label, objective, settings), paper in zip(MODELS, PAPER[name]):
            config = RunConfig(data=spec, model=ModelConfig(arch="conv", latent_dim=10), objective=objective,
                               settings=settings)
            t = train(config, data, steps, f"{label} {name}")
            accuracy = 100 * DIAGNOSTICS.get("probe")(t.snapshot(), data, n_train=60000).logistic_accuracy
            results.setdefault(name, {})[label] = {"ours": round(accuracy, 2), "paper": paper}
            print(f"{name:14s} {label:15s} probe {accuracy:6.2f}%  (paper {paper:.2f}%, {t.seconds:.0f} s)", flush=True)
    save("mu_vae_probe", {"epochs": args.epochs, "steps": steps, "accuracy": results})


if __name__ == "__main__":
    main()
