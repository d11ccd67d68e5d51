from dataclasses import dataclass

import torch

from ..errors import ConfigError
from . import as_bundle, held_out, register, sampling


@dataclass
class GradientSourcesResult:
    recon: float      # ||d recon / d encoder||: the reconstruction term's pull, through the decoder
    kl: float         # ||d (beta KL) / d encoder||: the KL term's pull, straight into the encoder
    total: float      # ||d loss / d encoder||, the sum of the two
    ratio: float      # kl / recon: above 1, the KL term's gradient is the larger
    cosine: float     # between the two: near -1, they pull the encoder in opposite directions
    batch: int


@register("gradient-sources")
def gradient_sources(model, data, n: int = 256, seed: int = 0) -> GradientSourcesResult:
    """The encoder's gradient from each term of the loss separately, on one batch and one draw of z:
    the reconstruction term E_q[-log p(x|z)] and the KL term beta KL(q || p). It tests the VLAE
    supplement's hypothesis (sec. 2) that without a careful initialization "the reconstruction
    gradient is overwhelmed by the KL divergence gradient", which drives q to the prior early in
    training. Defined for objectives whose loss is recon + beta KL; the two gradients sum to the
    loss's. Norms are over the encoder's parameters (and any the objective owns, e.g. a flow's)."""
    bundle = as_bundle(model)
    network, objective = bundle.network, bundle.objective
    x, y = held_out(bundle, data, n, seed)
    params = [*network.encoder_parameters(), *objective.parameters()]
    with sampling(x.device, seed):
        out = objective(network, x, y, bundle.step)
    weight = out.terms.get("kl_weight", objective.beta)  # an annealed objective's weight at this step
    recon, kl = out.terms["recon"], weight * out.terms["kl"]
    if not torch.allclose(out.loss, recon + kl, rtol=1e-4, atol=1e-4):
        raise ConfigError(f"the {objective.name} objective's loss is not recon + beta KL, so its encoder "
                          f"gradient does not split into those two sources")

    def flat(term):
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])

    g_recon, g_kl = flat(recon), flat(kl)
    r, k = g_recon.norm().item(), g_kl.norm().item()
    return GradientSourcesResult(r, k, (g_recon + g_kl).norm().item(), k / r if r > 0 else float("inf"),
                                 torch.nn.functional.cosine_similarity(g_recon, g_kl, dim=0).item(), len(x))
