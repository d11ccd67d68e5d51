from dataclasses import dataclass, field

import torch

from . import as_bundle, held_out, register, sampling


@dataclass
class DecoderRelianceResult:
    posterior: float            # E log p(x|z), z ~ q(z|x)  (nats per image)
    shuffled: float             # z taken from another image of the batch
    prior: float                # z ~ p(z)
    zeroed: list[float]         # z ~ q(z|x) with dimension d set to 0, for each d
    gap: float = field(init=False)  # posterior - shuffled: what the decoder loses when z stops describing x

    def __post_init__(self):
        self.gap = self.posterior - self.shuffled


@register("decoder-reliance")
@torch.no_grad()
def decoder_reliance(model, data, n: int = 1000, seed: int = 0) -> DecoderRelianceResult:
    """Does the decoder use z? The reconstruction log-likelihood with z from q(z|x), against z shuffled
    across the batch, z drawn from the prior, and each dimension zeroed in turn. A decoder that
    ignores z scores the same under all of them. z comes from the objective's own posterior (after
    the flow, refinement or mode updates the decoder was trained on)."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n, seed)
    with sampling(x.device, seed):
        z = bundle.posterior(x, y).sample(1)[0][0].detach()
        shuffled = z[torch.randperm(len(z), device=z.device)]
        prior = bundle.network.prior().sample((len(z),))
        if layered := getattr(bundle.network, "layered", False):  # a joint draw (z1, z) ~ p(z1|z) p(z)
            prior = torch.cat([bundle.network.layer_below(prior).sample(), prior], -1)

    def score(codes):
        return bundle.network.decode(codes, y).log_prob(x).mean().item()

    # With two stochastic layers the decoder reads z1 only, so zeroing a top dimension would change nothing
    # it sees: the per-dimension view is left empty (core.diagnostics.collapse says so).
    zeroed = []
    for d in range(0 if layered else z.shape[1]):
        cut = z.clone()
        cut[:, d] = 0
        zeroed.append(score(cut))
    return DecoderRelianceResult(score(z), score(shuffled), score(prior), zeroed)
