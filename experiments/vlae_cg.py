"""VLAE supplement, sec. 3: where VLAE + CG's time goes, and how close each update rule gets to the mode.

The supplement: "With T = 4, we find that VLAE+CG yields about 25% speed-up compared to the VLAE with minor
performance loss (~1%) on MNIST." vlae_nll.py measures both models' time per step and NLL; this script
measures why ours differ, on the two trained models of that table (run it after vlae_nll.py):

- time: one training batch (128 images), forward and backward, split into the decoder's linearization
  (the Jacobian and the Gauss-Newton precision, `linearize`), which both rules compute at every update,
  and the d x d solve, which only the Newton update needs; medians over 20 repeats;
- the mode: on 500 test images, for each model and each rule, the norm of the gradient of
  log p(x, z) at mu_T (0 at the mode of the linearized posterior), and the ELBO under the resulting q.

    python experiments/vlae_cg.py [--repeats 20]
"""
import argparse
import statistics
import time

import torch
from common import Cells, model_path

from core import checkpoint
from core import data as datasets
from core.data import DataSpec
from core.objectives.vlae import linearize

TABLE = "vlae_cg"
MODELS = {"VLAE (T=4)": "newton", "VLAE+CG (T=4)": "polak-ribiere"}


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    data = datasets.load(DataSpec("mnist", binarize="dynamic"))
    cells = Cells(TABLE, repeats=args.repeats)
    torch.manual_seed(0)
    batch = torch.bernoulli(data.train_x[:128])
    test = torch.bernoulli(data.test_x[:500], generator=torch.Generator().manual_seed(0))
    for label, rule in MODELS.items():
        bundle = checkpoint.load(model_path("vlae_nll", label))
        model = bundle.network.train()
        mu = model.encode(batch).loc.detach()

        def step():
            model.zero_grad()
            bundle.objective(model, batch).loss.backward()
        precision, grad = linearize(model, mu, batch)
        row = {"seconds_step": timed(step, args.repeats),
               "seconds_linearize": timed(lambda: linearize(model, mu, batch), args.repeats),
               "seconds_solve": timed(lambda: torch.linalg.solve(precision, grad), args.repeats)}
        for other in MODELS.values():  # each rule on this model's weights
            objective = replace_update(bundle.objective, other)
            with torch.no_grad():
                q = objective.laplace(model.eval(), test)
                _, g = linearize(model, q.loc, test)
                elbo = -objective(model, test).loss.item()
            row[f"{other}: |grad| at mu_T"] = g.norm(dim=-1).mean().item()
            row[f"{other}: ELBO"] = elbo
        cells.put(label, row)
        print(label, {k: round(v, 4) for k, v in row.items()}, flush=True)


def replace_update(objective, rule):
    from core.objectives import build
    return build("vlae", {**objective.settings(), "update": rule})


if __name__ == "__main__":
    main()
