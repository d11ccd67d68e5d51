"""VLAE supplement, sec. 2: SA-VAE's refinement step alpha "determined using a grid search among
{1.0, 0.1, 0.001, 0.0005, 0.0001} on the small network". Each alpha trains SA-VAE (T = 4, gradient-norm
clipping at 5) on the network of vlae_nll.py, then reports on 500 test images what the refinement
does: how far it moves the variational parameters lambda = (mu, log sigma^2), ||lambda_T - lambda_0||
per image, and what it gains, ELBO(lambda_T) - ELBO(lambda_0), each ELBO averaged over 20 draws of z;
and the model's IW-100 NLL on 1,000 test images. One cell per alpha, resumable.

Each alpha is tried under each meaning of a step (the objective's refine_grad): per-image (Kim et al.:
each image's own ELBO gradient, norm clipped at 5), batch-mean (the VLAE authors' code: the gradient of
the batch's mean, so alpha/128 per image, its squared norm clipped at 5) and batch-mean-as-written (that
code's sign: a step along the loss's gradient, which lowers the ELBO).

    python experiments/sa_vae_step.py [--steps 1000] [--grads per-image,batch-mean,batch-mean-as-written]
"""
import argparse

import torch
from common import Cells, train
from vlae_nll import NETWORK

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.diagnostics import held_out, sampling
from core.evaluate import importance_weighted_bound

GRID = (1.0, 0.1, 0.001, 0.0005, 0.0001)
GRADS = ("per-image", "batch-mean", "batch-mean-as-written")


def refinement(bundle, data, draws=20):
    """Mean ||lambda_T - lambda_0|| per image, and the mean ELBO gain, on the first 500 test images."""
    model, objective = bundle.network, bundle.objective
    x, y = held_out(bundle, data, 500)
    with sampling(x.device), torch.enable_grad():
        lam0 = model.encoder_head(model.encode_features(x, y)).detach()
        lam, _ = objective.refine(model, lam0, x, y, create_graph=False)
        lam = lam.detach()

        def elbo(params):
            with torch.no_grad():
                total = 0.0
                for _ in range(draws):
                    recon, kl = objective.elbo(model, params, x, y)
                    total = total - (recon + kl.sum(-1))
                return total / draws

        gain = (elbo(lam) - elbo(lam0)).mean().item()
    return (lam - lam0).norm(dim=-1).mean().item(), gain


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--grads", default=",".join(GRADS), help="the step conventions to try (refine_grad)")
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    cells = Cells("sa_vae_step", steps=args.steps, network=NETWORK.to_dict())
    for grad, alpha in [(g, a) for g in args.grads.split(",") for a in GRID]:
        key = f"alpha={alpha}" if grad == "per-image" else f"{grad} alpha={alpha}"
        if key not in cells:
            config = RunConfig(data=spec, model=NETWORK, objective="sa-vae",
                               settings={"refine_steps": 4, "refine_lr": alpha, "refine_grad": grad}, lr=5e-4)
            t = train(config, data, args.steps, key)
            bundle = t.snapshot()
            moved, gain = refinement(bundle, data)
            nll = -importance_weighted_bound(bundle, data, k=100, n=1000, chunk=25).iwae
            last = t.history[-100:]
            cells.put(key, {"alpha": alpha, "grad": grad, "moved": moved, "elbo_gain": gain, "nll": nll,
                            "train_seconds": round(t.seconds, 1),
                            "train_elbo_gain": sum(r["elbo_gain"] for r in last) / max(len(last), 1),
                            "steps": t.step_count, "diverged": t.diverged})
        r = cells[key]
        print(f"{key:14s} ||lambda_T - lambda_0|| {r['moved']:8.4f}  ELBO gain {r['elbo_gain']:8.3f} nats  "
              f"IW-100 NLL {r['nll']:7.2f}" + (f"  ({r['diverged']})" if r["diverged"] else ""), flush=True)


if __name__ == "__main__":
    main()
