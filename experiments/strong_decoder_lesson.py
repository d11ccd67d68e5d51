"""The numbers the lesson "A strong decoder ignores z" quotes, read from its four shipped checkpoints
(checkpoints/digits-pixelcnn-*): the held-out KL and active units along each run (its live rows), the recorded
diagnostics of its last step, and how far each Explore slider moves the picture Explore shows for a PixelCNN
(p(x_i = 1 | x_<i, z) over test image #0): the largest change of one pixel's probability as the slider goes
from the low end of its range to the high end, the others at their means.

    python experiments/strong_decoder_lesson.py       # writes experiments/results/strong_decoder_lesson.json
"""
import json

import torch
from common import RESULTS

from core import checkpoint, explore
from core import data as datasets

MODELS = ("digits-pixelcnn-vae", "digits-pixelcnn-aggressive", "digits-pixelcnn-bn-vae", "digits-pixelcnn-delta-vae")
STEPS = (50, 200, 350, 500, 1000, 1500)  # the live rows quoted
SHIPPED = RESULTS.parent.parent / "checkpoints"


@torch.no_grad()
def slider_reach(bundle, data) -> list[float]:
    """Per slider: the largest change of one pixel's probability in Explore's picture across its range."""
    x = (data.test_x[0] > 0.5).float()
    ranges = explore.latent_ranges(bundle, data)
    reach = []
    for i in range(bundle.latent_dim):
        low, high = list(ranges.mean), list(ranges.mean)
        low[i], high[i] = ranges.low[i], ranges.high[i]
        maps = explore.teacher_forced(bundle.network, [low, high], x)
        reach.append(round((maps[0] - maps[1]).abs().max().item(), 3))
    return reach


def main():
    data = datasets.load(datasets.DataSpec("digits", binarize="dynamic"))
    out = {}
    for name in MODELS:
        bundle = checkpoint.load(SHIPPED / name)
        meta = bundle.meta
        live = {row["step"]: row for row in meta["live"]}
        results = meta["diagnostics"]["results"]
        out[name] = {
            "live": {step: {"kl": round(live[step]["kl"], 3), "au": live[step]["au"]} for step in STEPS if step in live},
            "kl": round(results["kl"]["total"], 3), "au": results["active-units"]["count"],
            "mi": round(results["mutual-information"]["mi"], 3), "nll": round(-results["iwae"]["iwae"], 2),
            "slider_reach": slider_reach(bundle, data),
            "kept_steps": meta["snapshots"]["steps"],
        }
        if 200 in meta["snapshots"]["steps"]:
            out[name]["slider_reach_at_200"] = slider_reach(checkpoint.load(SHIPPED / name, step=200), data)
        print(name, {k: v for k, v in out[name].items() if k != "live"}, out[name]["live"])
    (RESULTS / "strong_decoder_lesson.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
