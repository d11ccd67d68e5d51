"""Seed 004, "Bridging the ELBO and MMD" (Ucar 2019), Table 1: the test accuracy of a classifier
trained on the latent codes of VAE, beta-VAE (beta = 4), mu-VAE#1 (c = 3) and mu-VAE#2 (c = 6), on
MNIST and Fashion-MNIST, beside the paper's.

As in the paper's appendix B:
  network    Table 4: convs 3x3 of 64 channels (stride 1, 2, 2), LeakyReLU 0.2, latent 10; decoder a
             linear map to 7x7x64, then transposed convs to 7x7x64, 14x14x32 and 28x28x1 with a sigmoid
  loss       the summed squared error ||x - x'||^2 (the `mse` likelihood: a Gaussian of variance 1/2,
             so its recon is the squared error + 392 log pi nats)
  init       normal with std sqrt(2 / fan-in) (its text calls it Xavier; the formula is He's)
  optimizer  Adam 1e-4, betas (0.9, 0.999), batch 64
  classifier Table 4's Dense 10-1024-1024-1024-10, LeakyReLU 0.2, Adam 1e-4, one update after every VAE
             update, each with the other frozen (experiments/classifier.py); scored on one draw of each
             test code
Second column: the post-hoc `probe` diagnostic (a logistic regression on the posterior means).
The mu-VAE's variance term is the bounded default; `--variance log` runs the paper's eq. 6 as written.
Budget: --epochs passes (the paper does not state its own). Finished cells are kept in
experiments/results/mu_vae_probe.json and not trained again.

    python experiments/mu_vae_probe.py [--epochs 1] [--datasets mnist] [--variance log] [--name NAME]
    python experiments/mu_vae_probe.py --name mu_vae_probe_5ep --epochs 5   # experiments/papers_budgets.sh
"""
import argparse
import math
import time

import torch

from classifier import LatentClassifier
from common import RESUME_SECONDS, Cells, advance, asked, done, keep, resume_path, resumed

from core import checkpoint
from core.engine import Trainer

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.diagnostics import DIAGNOSTICS
from core.evaluate import evaluate
from core.models import ModelConfig

MODELS = [("VAE", "vae", {}), ("beta-VAE", "beta-vae", {"beta": 4.0}),
          ("mu-VAE#1", "mu-vae", {"clip": 3.0}), ("mu-VAE#2", "mu-vae", {"clip": 6.0})]
PAPER = {"mnist": [93.422, 62.45, 95.28, 96.44], "fashion-mnist": [78.01, 62.35, 82.71, 84.260]}  # Table 1, %
TABLE4 = ModelConfig(arch="conv", channels=(64, 64, 64), strides=(1, 2, 2), kernel=3, activation="leaky-relu",
                     leaky_slope=0.2, decoder_channels=(64, 64, 32), decoder_strides=(1, 2, 2), latent_dim=10,
                     likelihood="mse", init="he")
CURVE_EVERY = 50  # steps per point of the training curves (Fig. 2)


def run(table: str, name: str, label: str, objective: str, settings: dict, steps: int, data) -> dict:
    config = RunConfig(data=DataSpec(name), model=TABLE4, objective=objective, settings=settings,
                       batch_size=64, lr=1e-4)
    classifier = LatentClassifier(TABLE4.latent_dim, data.info.n_classes, lr=1e-4)
    order = torch.Generator().manual_seed(1)
    # A run saves where it would resume from every 2 minutes: the VAE (with its history of accuracies) and,
    # beside it, the classifier with both its random streams, so a resumed run goes on exactly.
    resume = resume_path(table, f"{name} {label}")
    beside = resume.with_name(resume.name + ".classifier.safetensors")
    t = resumed(resume, config, data)
    accuracy = checkpoint.read_sidecar(checkpoint.paths(resume)[1]).get("accuracy", []) if t else []
    if t is not None and (len(accuracy) != t.step_count or not classifier.restore(beside, t.step_count, order=order)):
        print(f"{resume.name}: the classifier's state is not of step {t.step_count}; the run starts again")
        t, accuracy = None, []
    t = t or Trainer(config, data, live_every=0)
    saved = time.monotonic()

    def classifier_step(trainer):
        nonlocal saved
        idx = torch.randint(len(data.train_x), (64,), generator=order)
        accuracy.append(classifier.update(trainer.model, data.train_x[idx], data.train_y[idx])[1])
        if time.monotonic() - saved > RESUME_SECONDS:
            trainer.save(resume, resumable=True, asked=asked(config), accuracy=accuracy)
            classifier.save(beside, trainer.step_count, order=order)
            saved = time.monotonic()

    advance(t, steps - t.step_count, f"{name} {label}", classifier_step)
    keep(t, table, f"{name} {label}")
    done(resume)
    beside.unlink(missing_ok=True)
    bundle = t.snapshot()
    start = time.perf_counter()
    ev = evaluate(bundle, data)
    mse_constant = 0.5 * math.log(math.pi) * math.prod(data.info.shape)
    curves = {key: [] for key in ("mse", "kl", "classifier_accuracy", "mu_regularizer")}
    for i in range(0, t.step_count, CURVE_EVERY):
        # by step: a resumed run's history before its last save is thinned (the mean of the rows kept)
        rows = [r for r in t.history if i < r["step"] <= i + CURVE_EVERY]
        mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
        curves["mse"].append(round(mean("recon") - mse_constant, 3))
        curves["kl"].append(round(mean("kl"), 3))
        window = accuracy[i:i + CURVE_EVERY]
        curves["classifier_accuracy"].append(round(sum(window) / len(window), 4))
        if "mu_regularizer" in rows[0]:
            curves["mu_regularizer"].append(round(mean("mu_regularizer"), 3))
    return {"joint": round(100 * classifier.accuracy(bundle.network, data.test_x, data.test_y), 2),
            "probe": round(100 * DIAGNOSTICS.get("probe")(bundle, data, n_train=60000).logistic_accuracy, 2),
            "test_mse": round(ev.recon - mse_constant, 3), "test_kl": round(ev.kl, 3),
            "steps": t.step_count, "epochs": round(t.epoch, 2), "train_seconds": round(t.seconds, 1),
            "eval_seconds": round(time.perf_counter() - start, 1), "diverged": t.diverged,
            "curve_every": CURVE_EVERY, "curves": curves}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over the training set")
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--models", default=",".join(m[0] for m in MODELS))
    parser.add_argument("--variance", default="bounded", choices=["bounded", "log", "exp-minus-one"],
                        help="the mu-VAE's variance term (the paper's eq. 6: log)")
    parser.add_argument("--name", help="results file name (default mu_vae_probe, with _VARIANCE for another term)")
    args = parser.parse_args()
    suffix = "" if args.variance == "bounded" else f"_{args.variance}"
    table = args.name or f"mu_vae_probe{suffix}"
    cells = Cells(table, epochs=args.epochs, variance=args.variance)
    for name in args.datasets.split(","):
        data = datasets.load(DataSpec(name))
        steps = round(args.epochs * -(-len(data.train_x) // 64))
        for (label, objective, settings), paper in zip(MODELS, PAPER[name]):
            if label not in args.models.split(",") or f"{name} {label}" in cells:
                continue
            if objective == "mu-vae":
                settings = {**settings, "variance": args.variance}
            cell = {"paper": paper, **run(table, name, label, objective, settings, steps, data)}
            cells.put(f"{name} {label}", cell)
            print(f"{name:14s} {label:9s} joint {cell['joint']:6.2f}%  probe {cell['probe']:6.2f}%  "
                  f"(paper {paper:.2f}%)  KL {cell['test_kl']:.1f}  {cell['train_seconds']:.0f} s", flush=True)
    print("\n| model | MNIST joint | probe | paper | Fashion joint | probe | paper |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, _, _ in MODELS:
        out = []
        for name in ("mnist", "fashion-mnist"):
            c = cells.payload["cells"].get(f"{name} {label}")
            paper = PAPER[name][[m[0] for m in MODELS].index(label)]
            out += ["–", "–", f"{paper:.2f}"] if c is None else [f"{c['joint']:.2f}", f"{c['probe']:.2f}", f"{paper:.2f}"]
        print(f"| {label} | " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
