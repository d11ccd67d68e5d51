"""VLAE supplement (seeds 000 / 001), sec. 2-3: test NLL and time per step of VLAE, SA-VAE and VAE with
Householder flows or IAF at T = 1, 2, 4, 8 (T: the VLAE's mode updates, SA-VAE's refinements, or the
flow's steps), beside the plain VAE; and VLAE with the conjugate-gradient update at T = 4 (sec. 3).

As the supplement: Adam 5e-4, batch 128; alpha_t = 0.5 / (t + 1) for the VLAE update; for SA-VAE,
gradient-norm clipping and the step picked "using a grid search among {1.0, 0.1, 0.001, 0.0005,
0.0001}": the best IW-100 NLL of sa_vae_step.py's runs when they exist, else the supplement's 0.0005. The network is the
authors' code's (2 ReLU hidden layers of 500 each way) with the authors' initialization
('vlae-code'); z = 20 instead of their 50, and dynamic binarization with a Bernoulli decoder, to fit
a CPU. The score is the negative IW-k bound on the first test images, each model's own posterior
the proposal. Time per step is the median over training steps. One cell per model, resumable.

    python experiments/vlae_nll.py [--steps 1000] [--k 100] [--test 1000] [--only LABEL,...]
"""
import argparse
import json

from common import RESULTS, Cells, keep, seconds_per_step, train

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.evaluate import importance_weighted_bound
from core.models import ModelConfig

STEPS = (1, 2, 4, 8)
MODELS = [("VAE", "vae", {})]
MODELS += [(f"VLAE (T={t})", "vlae", {"mode_steps": t}) for t in STEPS]
MODELS += [("VLAE+CG (T=4)", "vlae", {"mode_steps": 4, "update": "polak-ribiere"})]
MODELS += [(f"SA-VAE (T={t})", "sa-vae", {"refine_steps": t}) for t in STEPS]
MODELS += [(f"VAE+HF (T={t})", "householder", {"flow_steps": t}) for t in STEPS]
MODELS += [(f"VAE+IAF (T={t})", "iaf", {"flow_steps": t}) for t in STEPS]
NETWORK = ModelConfig(hidden=(500, 500), latent_dim=20, init="vlae-code")
TABLE = "vlae_nll"


def sa_vae_step() -> float:
    """SA-VAE's refinement step: the grid's best (sa_vae_step.py) under the objective's default step
    convention (per-image), or the supplement's pick."""
    path = RESULTS / "sa_vae_step.json"
    cells = json.loads(path.read_text())["cells"] if path.exists() else {}
    ok = [c for c in cells.values() if not c["diverged"] and isinstance(c["nll"], float)
          and c.get("grad", "per-image") == "per-image"]
    return min(ok, key=lambda c: c["nll"])["alpha"] if ok else 0.0005


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--test", type=int, default=1000, help="test images scored")
    parser.add_argument("--only", help="run just these models (labels from the table, comma-separated)")
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    alpha = sa_vae_step()
    cells = Cells(TABLE, steps=args.steps, k=args.k, test=args.test, network=NETWORK.to_dict(), sa_vae_step=alpha)
    print(f"SA-VAE's refinement step: {alpha}", flush=True)
    for label, objective, settings in MODELS:
        settings = {**settings, "refine_lr": alpha} if objective == "sa-vae" else settings
        if label in cells or (args.only and label not in args.only.split(",")):
            continue
        config = RunConfig(data=spec, model=NETWORK, objective=objective, settings=settings, lr=5e-4)
        t = train(config, data, args.steps, label)
        bound = importance_weighted_bound(t.snapshot(), data, k=args.k, n=args.test, chunk=25)
        keep(t, TABLE, label)
        cells.put(label, {"nll": -bound.iwae, "elbo": bound.elbo, "seconds_per_step": seconds_per_step(t),
                          "train_seconds": t.seconds, "steps": t.step_count, "diverged": t.diverged})
    for label, _, _ in MODELS:
        if label in cells:
            r = cells[label]
            print(f"{label:15s} IW-{args.k} NLL {r['nll']:7.2f}  ELBO {r['elbo']:8.2f}  "
                  f"{1000 * r['seconds_per_step']:6.1f} ms/step", flush=True)


if __name__ == "__main__":
    main()
