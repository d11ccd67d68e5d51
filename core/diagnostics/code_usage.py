import math
from dataclasses import dataclass

import torch
from torch.distributions import Bernoulli, Categorical, OneHotCategorical

from ..errors import ConfigError
from . import as_bundle, held_out, register, sampling


@dataclass
class CodeUsageResult:
    usage: list[float]       # aggregate posterior mean_x q(z|x): per category, or P(z_d = 1) per bit
    entropy: float           # nats: H of the category usage, or the sum of the per-bit entropies
    perplexity: float        # exp(entropy): how many codes are effectively in use
    max_perplexity: float    # the number of categories, or 2^bits: every code used equally
    per_dim_entropy: list[float]  # bits only: H(P(z_d = 1)) per bit; empty for a categorical


def code_usage_of(posterior) -> CodeUsageResult:
    """Usage of the codes of a discrete latent under the aggregate posterior q(z) = mean_x q(z|x)."""
    q = posterior.marginals()
    if isinstance(q, OneHotCategorical):
        usage = q.probs.mean(0)
        entropy = Categorical(probs=usage).entropy().item()
        return CodeUsageResult(usage.tolist(), entropy, math.exp(entropy), float(len(usage)), [])
    if isinstance(q, Bernoulli):
        usage = q.probs.mean(0)
        per_bit = Bernoulli(probs=usage).entropy()
        entropy = per_bit.sum().item()
        return CodeUsageResult(usage.tolist(), entropy, math.exp(entropy), 2.0 ** len(usage), per_bit.tolist())
    raise ConfigError("code usage is for discrete latents (bernoulli or categorical); this model's are Gaussian")


def live_code_usage(q) -> dict:
    if not isinstance(q.marginals(), (Bernoulli, OneHotCategorical)):
        return {}
    return {"code_perplexity": code_usage_of(q).perplexity}


@register("code-usage", live=live_code_usage)
@torch.no_grad()
def code_usage(model, data, n: int = 1000) -> CodeUsageResult:
    """Entropy and perplexity of the aggregate code usage q(z) = mean_x q(z|x) of a discrete latent,
    the codebook-usage measure of discrete-latent models: perplexity exp(H) is the effective number
    of codes used, equal to the number of codes when all are used equally and 1 when the encoder
    always picks the same one (a collapsed code). For c independent bits the entropy is the sum of
    the per-bit entropies, an upper bound on the entropy of the joint code."""
    bundle = as_bundle(model)
    x, y = held_out(bundle, data, n)
    with sampling(bundle.device):
        return code_usage_of(bundle.posterior(x, y))
