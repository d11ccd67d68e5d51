"""Seed discrete-latent paper (Bartler et al. 2019): a fully connected Bernoulli VAE with c = 50 and a
categorical VAE with c = 100, trained with the importance-sampling estimator; the loss and the
variance of the encoder's gradient over training. The variance is measured every `--every` steps
from R fresh estimates on one fixed batch of 128 training images: the sum over the encoder-head
weights of the per-entry variance, and that total divided by the squared norm of the mean gradient.

    python experiments/discrete_variance.py [--steps 2000] [--every 250] [--repeats 50]
"""
import argparse

import torch
from common import save, train

from core import data as datasets
from core.data import DataSpec
from core.config import RunConfig
from core.engine import Diverged
from core.models import ModelConfig


def gradient_variance(trainer, x, repeats):
    """Total variance of the encoder-head gradient over fresh estimates, and the same divided by the
    squared norm of their mean (scale-free: 1 means the noise is as large as the signal)."""
    model, objective = trainer.model, trainer.objective
    grads = []
    for _ in range(repeats):
        model.zero_grad()
        objective(model, x).loss.backward()
        grads.append(model.encoder_head.weight.grad.flatten().clone())
    model.zero_grad()
    grads = torch.stack(grads)
    variance = grads.var(0).sum().item()
    return variance, variance / grads.mean(0).pow(2).sum().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    x = torch.bernoulli(data.train_x[:128], generator=torch.Generator().manual_seed(0))
    curves = {}
    for latent, c in (("bernoulli", 50), ("categorical", 100)):
        config = RunConfig(data=spec, model=ModelConfig(latent_dim=c), objective="discrete-is",
                           settings={"latent_type": latent, "samples": 10})
        trainer = train(config, data, 0, latent)
        rows = []
        for step in range(0, args.steps + 1, args.every):
            if step:
                try:
                    trainer.step(args.every)
                except Diverged as e:
                    print(f"{latent}: {e}", flush=True)
                    rows.append({"step": trainer.step_count, "diverged": str(e)})
                    break
            recent = trainer.history[-args.every:]
            loss = round(sum(r["loss"] for r in recent) / len(recent), 2) if recent else None
            var, relative = gradient_variance(trainer, x, args.repeats)
            rows.append({"step": trainer.step_count, "loss": loss, "grad_variance": var, "relative_variance": relative})
            print(f"{latent:11s} c={c:<3d} step {trainer.step_count:5d}  mean loss of the last {args.every} steps "
                  f"{loss if loss is not None else '-':>8}  encoder grad variance {var:10.4g}  "
                  f"relative to the mean's squared norm {relative:8.3g}", flush=True)
        curves[f"{latent}-{c}"] = rows
    save("discrete_variance", {"steps": args.steps, "repeats": args.repeats, "curves": curves})


if __name__ == "__main__":
    main()
