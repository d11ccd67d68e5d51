"""Seed VLAE (Park et al. 2019): importance-weighted NLL on MNIST of the VLAE with T = 1, 2 and 4
against VAE, SA-VAE, VAE+HF and VAE+IAF, all at the same budget: the same number of optimizer steps,
MLP 784-512-256-z with z = 20, Adam 5e-4 (the paper's), batch 128, dynamic binarization. Each
model's own posterior is the proposal of its bound.

    python experiments/vlae_nll.py [--steps 1000] [--k 100] [--test 1000]
"""
import argparse

from common import save, train

from core import data as datasets
from core.data import DataSpec
from core.config import RunConfig
from core.evaluate import importance_weighted_bound
from core.models import ModelConfig

MODELS = [("VAE", "vae", {}), ("SA-VAE (T=4)", "sa-vae", {"refine_steps": 4}),
          ("VAE+HF (T=4)", "householder", {"flow_steps": 4}), ("VAE+IAF (T=4)", "iaf", {"flow_steps": 4}),
          ("VLAE (T=1)", "vlae", {"mode_steps": 1}), ("VLAE (T=2)", "vlae", {"mode_steps": 2}),
          ("VLAE (T=4)", "vlae", {"mode_steps": 4})]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--test", type=int, default=1000, help="test images scored")
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    results = {}
    for label, objective, settings in MODELS:
        config = RunConfig(data=spec, model=ModelConfig(latent_dim=20), objective=objective, settings=settings, lr=5e-4)
        t = train(config, data, args.steps, label)
        nll = -importance_weighted_bound(t.snapshot(), data, k=args.k, n=args.test, chunk=25).iwae
        results[label] = {"nll": round(nll, 2), "train_seconds": round(t.seconds)}
        print(f"{label:15s} IW-{args.k} NLL {nll:7.2f} nats  ({t.seconds:.0f} s training)", flush=True)
    save("vlae_nll", {"steps": args.steps, "k": args.k, "test_images": args.test, "nll": results})


if __name__ == "__main__":
    main()
