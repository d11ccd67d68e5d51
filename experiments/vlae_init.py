"""VLAE supplement, sec. 2: "bigger models ... are prone to collapse if not properly initialized", and
the recipe that prevents it: He initialization of the backward pass with gain 2^(1/3), and data
mean-normalized and scaled so that the reconstruction loss starts near 1. Its hypothesis: without it
the KL term's gradient to the encoder overwhelms the reconstruction term's early in training.

A bigger VAE than vlae_nll.py's (2 ReLU layers of 1,000 each way, z = 50, the authors' z), with the
supplement's Gaussian output (one learned variance, from 1, as the authors' code), on MNIST, Adam 5e-4,
batch 128, with and without each half of the recipe:

- the recipe as worded (init 'vlae', data normalized), and as the authors' code does it ('vlae-code');
- neither (PyTorch's default init, pixels in [0, 1]); the init alone; the normalization alone.

Each normalized run is made twice: at the authors' scale (`pixel-rms`: each pixel's deviation from the
mean image has unit mean square) and at the scale this lab first read the recipe as (`mean`: each
image's squared norm is 1 on average, 28x the authors' scale on MNIST).

Per run: active units and KL per dimension at step 0 and at the end (1,000 test images); the
squared reconstruction error at step 0 (the quantity the recipe sets near 1); and the encoder's
gradient from each term (core.diagnostics' gradient-sources, 256 test images) with the decoder's
learned log variance, at every one of the first 100 steps and every 50 after. One cell per run,
resumable.

    python experiments/vlae_init.py [--steps 2000] [--name vlae_init] [--only LABEL]
"""
import argparse
from dataclasses import replace

import torch
from common import Cells, advance, train

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.diagnostics import DIAGNOSTICS, held_out
from core.models import ModelConfig

RUNS = {  # label: (init, normalize)
    "recipe (as worded), pixel RMS": ("vlae", "pixel-rms"),
    "recipe (authors' code), pixel RMS": ("vlae-code", "pixel-rms"),
    "normalization only, pixel RMS": ("default", "pixel-rms"),
    "neither": ("default", "none"),
    "init only": ("vlae", "none"),
    "recipe (as worded)": ("vlae", "mean"),               # unit image norm, 28x the authors' scale
    "recipe (authors' code)": ("vlae-code", "mean"),
    "normalization only": ("default", "mean"),
}
NETWORK = ModelConfig(hidden=(1000, 1000), latent_dim=50, likelihood="gaussian", decoder_variance="shared")


def state(trainer, data):
    bundle = trainer.snapshot()
    kl = DIAGNOSTICS.get("kl")(bundle, data)
    return {"active_units": DIAGNOSTICS.get("active-units")(bundle, data).count, "kl": kl.total,
            "kl_per_dim": kl.per_dim}


def squared_error(trainer, data):
    bundle = trainer.snapshot()
    x, y = held_out(bundle, data, 1000)
    with torch.no_grad():
        z = bundle.network.encode(x, y).rsample()
        return (x - bundle.network.mean_image(z, y)).pow(2).flatten(1).sum(1).mean().item()


def gradient_sources(trainer, data):
    """The two gradients to the encoder now, and the decoder's learned variance, which scales the
    reconstruction term's by 1 / sigma^2."""
    bundle = trainer.snapshot()
    g = DIAGNOSTICS.get("gradient-sources")(bundle, data)
    return {"step": trainer.step_count, "recon": g.recon, "kl": g.kl, "ratio": g.ratio, "cosine": g.cosine,
            "decoder_log_var": bundle.network.decoder.log_var.item()}


def run(label, steps, datasets_by_norm):
    init, normalize = RUNS[label]
    data = datasets_by_norm[normalize]
    config = RunConfig(data=data.spec, model=replace(NETWORK, init=init), lr=5e-4)
    trainer = train(config, data, 0, label)
    start, error0 = state(trainer, data), squared_error(trainer, data)
    sources = []

    def record(t):
        if t.step_count <= 100 or t.step_count % 50 == 0:
            sources.append(gradient_sources(t, data))

    sources.append(gradient_sources(trainer, data))
    advance(trainer, steps, label, record)
    end = state(trainer, data)
    return {"init": init, "normalize": normalize, "start": start, "end": end, "squared_error_at_step_0": error0,
            "gradient_sources": sources, "train_loss_last_100": sum(r["loss"] for r in trainer.history[-100:]) / 100,
            "steps": trainer.step_count, "diverged": trainer.diverged}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--name", default="vlae_init", help="results file name (another budget keeps its own)")
    parser.add_argument("--only", choices=list(RUNS), help="run just this one")
    args = parser.parse_args()
    by_norm = {n: datasets.load(DataSpec("mnist", normalize=n)) for n in datasets.NORMALIZATIONS}
    cells = Cells(args.name, steps=args.steps, network=NETWORK.to_dict(), records="gradient sources, decoder log variance")
    for label in [args.only] if args.only else RUNS:
        if label not in cells:
            cells.put(label, run(label, args.steps, by_norm))
        r = cells[label]
        first = r["gradient_sources"][0]
        print(f"{label:24s} step-0 squared error {r['squared_error_at_step_0']:8.2f}  "
              f"KL/recon gradient at step 0 {first['ratio']:7.3g}  AU {r['start']['active_units']:2d} -> "
              f"{r['end']['active_units']:2d}  KL {r['start']['kl']:6.2f} -> {r['end']['kl']:6.2f}  "
              f"log sigma^2 {first['decoder_log_var']:.2f} -> {r['gradient_sources'][-1]['decoder_log_var']:.2f}", flush=True)


if __name__ == "__main__":
    main()
