"""Seed 003 ("Training VAEs with discrete latent representations using importance sampling"), Figs. 6,
9 and 12: the loss, the training log-likelihood E_q[ln p(x|z)] and the gradient variance over training,
for its Table 1 networks, trained as its sec. 6 says (the importance-sampling estimator with q_I = q,
Adam 1e-3, batch 2048).

Runs: FC BVAE (c = 50 bits) and FC CVAE (c = 100 categories), CNN BVAE and CNN CVAE on MNIST, and
the FC BVAE on Fashion-MNIST. One cell per run, resumable.

The gradient variance, which the paper plots but does not define, is measured at every logged point
on one fixed batch of the first 2048 test images (the paper's batch size), from R fresh draws of z:
- `weights`: the variance of the minibatch gradient of the loss with respect to the encoder's
  parameters, per parameter, averaged over all of them: the noise the optimizer sees (with the
  signal-to-noise ratio of core.diagnostics' gradient-variance);
- `logits`: the same for the gradient with respect to the encoder's outputs eta, per image and
  latent, averaged: the quantity of the paper's sec. 4, which its argument says goes to 0 as q
  goes to 0 or 1;
- `q(1-q)`: the factor of sec. 4's argument (for a categorical latent, 1 - sum q_i^2), averaged.

    python experiments/discrete_curves.py [--epochs 20] [--samples 1] [--repeats 16] [--only NAME,...]
    python experiments/discrete_curves.py --name discrete_curves_300ep --epochs 300 --log-every 10 \
        --only "FC BVAE mnist,FC CVAE mnist"     # the paper's budget (experiments/papers_budgets.sh)

A run saves the point it would resume from (with its logged rows) every few minutes, at an epoch's end.
"""
import argparse
import time
from dataclasses import replace

import torch
from common import RESUME_SECONDS, Cells, advance, asked, done, keep, resume_path, resumed, seconds_per_step

from core import checkpoint
from core.engine import Trainer

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.diagnostics import held_out, sampling
from core.diagnostics.gradient_variance import gradient_variance
from core.models import ModelConfig

FC = ModelConfig(hidden=(1024,))                                                 # Table 1, left
CNN = ModelConfig(arch="conv", channels=(32, 64, 64, 128), kernel=3, hidden=())  # Table 1, right: 3x3, stride 2
RUNS = {  # the fast FC runs first
    "FC BVAE mnist": ("mnist", FC, "bernoulli", 50),
    "FC CVAE mnist": ("mnist", FC, "categorical", 100),
    "FC BVAE fashion": ("fashion-mnist", FC, "bernoulli", 50),
    "CNN BVAE mnist": ("mnist", CNN, "bernoulli", 50),
    "CNN CVAE mnist": ("mnist", CNN, "categorical", 100),
}
TABLE = "discrete_curves"
BATCH = 2048  # the paper's batch size (sec. 6)


def variances(trainer, data, repeats):
    """The three numbers of the module docstring, from `repeats` estimates on the first 2048 test images."""
    bundle = trainer.snapshot()
    model, objective = bundle.network, bundle.objective
    stats = gradient_variance(bundle, data, n=BATCH, repeats=repeats).encoder
    x, _ = held_out(bundle, data, BATCH)
    seen, logits = {}, []
    hook = model.encoder_head.register_forward_hook(lambda mod, args, out: seen.update(eta=out) or out.retain_grad())
    try:
        with sampling(x.device, seed=1):
            for _ in range(repeats):
                objective(model, x).loss.backward()
                logits.append(seen["eta"].grad * len(x))  # the loss is a batch mean: per image, undo the 1/B
    finally:
        hook.remove()
        model.zero_grad()
    with torch.no_grad():
        q = model.encode(x).probs
        spread = q * (1 - q) if model.cfg.latent == "bernoulli" else 1 - q.pow(2).sum(-1, keepdim=True)
    return {"var_weights": stats.variance / stats.n_params, "snr_weights": stats.snr,
            "var_logits": torch.stack(logits).var(0).mean().item(), "q(1-q)": spread.mean().item()}


def run(name, args):
    dataset, network, latent, c = RUNS[name]
    spec = DataSpec(dataset, binarize="dynamic")
    data = datasets.load(spec)
    config = RunConfig(data=spec, model=replace(network, latent_dim=c),
                       objective="discrete-is", settings={"latent_type": latent, "samples": args.samples},
                       batch_size=BATCH, lr=1e-3)
    resume = resume_path(args.name, name)
    trainer = resumed(resume, config, data) or Trainer(config, data, live_every=0)
    rows = checkpoint.read_sidecar(checkpoint.paths(resume)[1]).get("rows", []) if trainer.step_count else []
    per_epoch = trainer.steps_per_epoch
    saved = time.monotonic()

    def log(epoch):
        recent = trainer.history[-per_epoch:]
        row = {"epoch": epoch, "step": trainer.step_count, **variances(trainer, data, args.repeats)}
        if recent:
            row["loss"] = sum(r["loss"] for r in recent) / len(recent)
            row["log_likelihood"] = -sum(r["recon"] for r in recent) / len(recent)
        rows.append(row)
        print(f"{name:16s} epoch {epoch:3d}  loss {row.get('loss', float('nan')):7.2f}  "
              f"E_q ln p(x|z) {row.get('log_likelihood', float('nan')):8.2f}  var(weights) {row['var_weights']:.3g}  "
              f"var(logits) {row['var_logits']:.3g}  q(1-q) {row['q(1-q)']:.3g}", flush=True)

    if not rows:
        log(0)
    for epoch in range(trainer.step_count // per_epoch + 1, args.epochs + 1):
        advance(trainer, per_epoch, f"{name} epoch {epoch}")
        if trainer.diverged:
            rows.append({"epoch": epoch, "diverged": str(trainer.diverged)})
            break
        if epoch == 1 or epoch % args.log_every == 0 or epoch == args.epochs:
            log(epoch)
        if time.monotonic() - saved > RESUME_SECONDS:  # at an epoch's end, with the rows logged so far
            trainer.save(resume, resumable=True, asked=asked(config), rows=rows)
            saved = time.monotonic()
    keep(trainer, args.name, name)
    done(resume)
    return {"rows": rows, "train_seconds": round(trainer.seconds, 1), "steps_per_epoch": per_epoch,
            "seconds_per_step": seconds_per_step(trainer)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="the paper trains 300")
    parser.add_argument("--samples", type=int, default=1, help="M, samples of z per image (the paper does not say)")
    parser.add_argument("--repeats", type=int, default=16, help="gradient estimates per variance point")
    parser.add_argument("--only", help=f"run just these (comma-separated): {', '.join(RUNS)}")
    parser.add_argument("--name", default=TABLE, help="results file name (another budget keeps its own)")
    parser.add_argument("--log-every", type=int, default=1,
                        help="epochs between logged points (after epoch 1; the last is always logged)")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else list(RUNS)
    if unknown := [n for n in only if n not in RUNS]:
        parser.error(f"unknown run {unknown[0]!r}; runs: {', '.join(RUNS)}")
    # The 20-epoch table predates --log-every, so its settings name it only when it is not 1.
    cells = Cells(args.name, epochs=args.epochs, samples=args.samples, repeats=args.repeats,
                  **({"log_every": args.log_every} if args.log_every != 1 else {}))
    for name in only:
        if name not in cells:
            cells.put(name, run(name, args))


if __name__ == "__main__":
    main()
