"""VLAE supplement, Figs. 1-2: reconstructions and samples of the VLAE with a Gaussian output ("Gaussian
output distribution is used unless otherwise stated"), on MNIST, Fashion-MNIST and Omniglot, and
MNIST with a Bernoulli output as its panel (a). SVHN and CIFAR-10 are not in the offline data here.

VLAE (T = 4) on vlae_nll.py's network; Gaussian runs use the supplement's data recipe (mean
normalization at the authors' scale, `pixel-rms`; the init 'vlae-code') and one learned output variance,
as the authors' code. `--normalize mean --name vlae_gaussian_image_norm` repeats the earlier runs at the
scale this lab first read the recipe as (unit image norm, 28x larger on MNIST). The
NLL is the negative IW-100 bound on 1,000 test images; for Gaussian runs it is in the normalized
data's units, as the authors' code reports it (in pixel units add D log(scale), given per run).
Figures: docs/figures/vlae_reconstructions.png and vlae_samples.png. One cell per dataset, resumable.

    python experiments/vlae_gaussian.py [--steps 1000] [--normalize pixel-rms] [--name vlae_gaussian]
"""
import argparse
import json
import math
import sys
from dataclasses import replace

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, Cells, kept, model_path, save_figure, train_cell  # noqa: E402
from vlae_nll import NETWORK  # noqa: E402

from core import checkpoint  # noqa: E402
from core import data as datasets  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.data import DataSpec  # noqa: E402
from core.diagnostics import DIAGNOSTICS  # noqa: E402
from core.evaluate import importance_weighted_bound  # noqa: E402
from dashboard.plots import image_grid  # noqa: E402

RUNS = {  # label: (dataset, binarize, likelihood); a Gaussian run's data is normalized (--normalize)
    "MNIST (Bernoulli)": ("mnist", "dynamic", "bernoulli"),
    "MNIST": ("mnist", "none", "gaussian"),
    "Fashion-MNIST": ("fashion-mnist", "none", "gaussian"),
    "Omniglot": ("omniglot", "none", "gaussian"),
}
TABLE = "vlae_gaussian"
NORMALIZE = "pixel-rms"  # --normalize


# The Bernoulli panel is vlae_nll.py's VLAE (T = 4), the same run: its cell and model are read from there.
SAME_AS = {"MNIST (Bernoulli)": ("vlae_nll", "VLAE (T=4)")}


def spec_and_model(label, normalize=NORMALIZE):
    name, binarize, likelihood = RUNS[label]
    if likelihood == "gaussian":
        return DataSpec(name, normalize=normalize), replace(NETWORK, decoder_variance="shared")
    return DataSpec(name, binarize=binarize), NETWORK


def saved_model(label, table=TABLE):
    return model_path(*SAME_AS[label]) if label in SAME_AS else model_path(table, label)


def usage(label, table, normalize) -> dict:
    """Whether the saved model uses its code: active units and KL of its own posterior on 1,000 test images."""
    bundle = checkpoint.load(saved_model(label, table))
    data = datasets.load(spec_and_model(label, normalize)[0])
    kl = DIAGNOSTICS.get("kl")(bundle, data)
    return {"kl": kl.total, "active_units": DIAGNOSTICS.get("active-units")(bundle, data).count,
            "decoder_log_var": bundle.network.decoder.log_var.item()}


def figures(cells, table, normalize, suffix=""):
    recon, samples = [], []
    for label in RUNS:
        path = saved_model(label, table)
        if label not in cells or not checkpoint.paths(path)[1].exists():
            continue
        bundle = checkpoint.load(path)
        data = datasets.load(spec_and_model(label, normalize)[0])
        x = data.test_x[torch.linspace(0, len(data.test_x) - 1, 16).long()]  # spread out: Omniglot's are sorted by character
        recon.append((label, image_grid(data.to_image(torch.cat([x, bundle.network.reconstruct(x)])), nrow=16)))
        z = torch.randn(32, bundle.network.latent_dim, generator=torch.Generator().manual_seed(0))
        samples.append((label, image_grid(data.to_image(bundle.network.mean_image(z).detach()), nrow=16)))
    for name, panels, what in ((f"vlae_reconstructions{suffix}.png", recon, "test images (top) and reconstructions"),
                               (f"vlae_samples{suffix}.png", samples, "decoded from the prior")):
        if not panels:
            continue
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.3 * len(panels) + 0.4), squeeze=False)
        for ax, (label, picture) in zip(axes[:, 0], panels):
            ax.imshow(picture, cmap="gray" if picture.shape[-1] == 1 else None)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"VLAE (T = 4): {what}", fontsize=10)
        fig.tight_layout()
        save_figure(fig, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--normalize", default=NORMALIZE, choices=[n for n in datasets.NORMALIZATIONS if n != "none"],
                        help="the Gaussian runs' data: pixel-rms (the authors' code) or mean (unit image norm)")
    parser.add_argument("--name", default=TABLE, help="results file name (another normalization keeps its own)")
    args = parser.parse_args()
    # The unit-image-norm table predates the option, so its settings do not name it.
    cells = Cells(args.name, steps=args.steps, network=NETWORK.to_dict(),
                  **({} if args.normalize == "mean" else {"normalize": args.normalize}))
    for label in RUNS:
        if label in SAME_AS and label not in cells:
            table, key = SAME_AS[label]
            path = RESULTS / f"{table}.json"
            other = json.loads(path.read_text())["cells"] if path.exists() else {}
            if key not in other:
                print(f"{label}: not yet measured (it is {table}.py's {key}: run that first)", file=sys.stderr)
                continue
            cells.put(label, {**other[key], "same_as": f"{table}.py {key}"})
        if label not in cells:
            spec, model = spec_and_model(label, args.normalize)
            data = datasets.load(spec)
            config = RunConfig(data=spec, model=model, objective="vlae",
                               settings={"mode_steps": 4}, lr=5e-4)
            found = kept(args.name, label, config, args.steps, data)
            if found:
                bundle, seconds, diverged = *found, None
            else:
                t = train_cell(config, data, args.steps, args.name, label)
                bundle, seconds, diverged = t.snapshot(), t.seconds, t.diverged
            bound = importance_weighted_bound(bundle, data, k=100, n=1000, chunk=25)
            pixels = data.info.shape[0] * data.info.shape[1] * data.info.shape[2]
            cells.put(label, {"nll": -bound.iwae, "elbo": bound.elbo, "scale": data.scale,
                              "pixel_units_offset": pixels * math.log(data.scale), "train_seconds": seconds,
                              "steps": args.steps, "diverged": diverged})
        if label not in cells:
            continue
        if label not in SAME_AS and "active_units" not in cells[label] and checkpoint.paths(saved_model(label, args.name))[1].exists():
            cells.put(label, {**cells[label], **usage(label, args.name, args.normalize)})
        r = cells[label]
        print(f"{label:18s} IW-100 NLL {r['nll']:9.2f}  ELBO {r['elbo']:9.2f}  ({r['train_seconds']:.0f} s)", flush=True)
    figures(cells, args.name, args.normalize, "" if args.name == TABLE else args.name.removeprefix(TABLE))


if __name__ == "__main__":
    main()
