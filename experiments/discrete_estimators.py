"""Discrete-latent gradient estimators side by side, at equal samples per image: seed 003's
importance-sampling estimator (q_I = q, and a flatter proposal, eqs. 14-17), REINFORCE with the
leave-one-out baseline, and Gumbel-softmax (relaxed, and straight-through).

Every cell trains seed 003's FC network (784-1024-c and back, its Table 1) with Adam 1e-3 at batch
2048 (its sec. 6) for the same number of epochs, from the same initial weights (the seed fixes them), with M samples of z
per image. Reported per cell:
- the encoder's gradient variance at the start and the end: core.diagnostics' gradient-variance on
  the first 512 test images, R estimates; per parameter, averaged; and the mean signal-to-noise ratio;
- the test ELBO of the discrete model after the budget (10,000 test images, one draw of z each, KL
  in closed form); a Gumbel-softmax model is scored as the discrete VAE it stands for;
- the median time of a training step.

    python experiments/discrete_estimators.py [--epochs 5] [--samples 4] [--repeats 32]
"""
import argparse

from common import Cells, advance, seconds_per_step, train

from core import data as datasets
from core.config import RunConfig
from core.data import DataSpec
from core.diagnostics.gradient_variance import gradient_variance
from core.evaluate import evaluate
from core.models import ModelConfig

ESTIMATORS = {
    "importance sampling, q_I = q": ("discrete-is", {}),
    "importance sampling, q_I at temperature 2": ("discrete-is", {"proposal_temperature": 2.0}),
    "REINFORCE, leave-one-out baseline": ("reinforce-loo", {}),
    "Gumbel-softmax, relaxed (tau 1)": ("gumbel-softmax", {"temperature": 1.0}),
    "Gumbel-softmax, straight-through (tau 1)": ("gumbel-softmax", {"temperature": 1.0, "estimator": "straight-through"}),
}
LATENTS = {"bernoulli": 50, "categorical": 100}  # seed 003's BVAE and CVAE
BATCH = 2048


def variance(bundle, data, repeats):
    stats = gradient_variance(bundle, data, n=512, repeats=repeats).encoder
    return stats.variance / stats.n_params, stats.snr


def run(latent, estimator, args, data):
    objective, settings = ESTIMATORS[estimator]
    config = RunConfig(data=data.spec, model=ModelConfig(hidden=(1024,), latent_dim=LATENTS[latent]),
                       objective=objective, settings={"latent_type": latent, "samples": args.samples, **settings},
                       batch_size=BATCH, lr=1e-3)
    trainer = train(config, data, 0, estimator)
    var_start, snr_start = variance(trainer.snapshot(), data, args.repeats)
    advance(trainer, args.epochs * trainer.steps_per_epoch, f"{latent}: {estimator}")
    bundle = trainer.snapshot()
    var_end, snr_end = variance(bundle, data, args.repeats)
    result = evaluate(bundle, data)
    return {"elbo": result.elbo, "kl": result.kl, "var_start": var_start, "snr_start": snr_start,
            "var_end": var_end, "snr_end": snr_end, "seconds_per_step": seconds_per_step(trainer),
            "steps": trainer.step_count, "diverged": trainer.diverged}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4, help="M, samples of z per image, the same for all")
    parser.add_argument("--repeats", type=int, default=32, help="gradient estimates per variance")
    args = parser.parse_args()
    spec = DataSpec("mnist", binarize="dynamic")
    data = datasets.load(spec)
    cells = Cells("discrete_estimators", epochs=args.epochs, samples=args.samples, repeats=args.repeats)
    for latent in LATENTS:
        for estimator in ESTIMATORS:
            key = f"{latent} {estimator}"
            if key not in cells:
                cells.put(key, run(latent, estimator, args, data))
            r = cells[key]
            print(f"{key:58s} ELBO {r['elbo']:8.2f}  KL {r['kl']:6.2f}  encoder grad variance {r['var_start']:.3g} -> "
                  f"{r['var_end']:.3g}  SNR {r['snr_start']:.3f} -> {r['snr_end']:.3f}  "
                  f"{1000 * r['seconds_per_step']:.0f} ms/step", flush=True)


if __name__ == "__main__":
    main()
