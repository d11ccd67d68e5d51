from dataclasses import dataclass

import torch

from ..errors import ConfigError
from . import as_bundle, held_out, register, sampling


@dataclass
class GradientStats:
    variance: float     # trace of the gradient's covariance: sum over parameters of Var_r(g_p)
    signal: float       # ||E_r[g]||^2, the squared norm of the mean gradient
    snr: float          # mean over parameters of |E_r[g_p]| / std_r(g_p)
    n_params: int


@dataclass
class GradientVarianceResult:
    encoder: GradientStats   # the inference side: encoder, plus any parameters the objective owns (flows)
    decoder: GradientStats
    repeats: int
    batch: int


def gradient_stats(total, total_sq, repeats: int) -> GradientStats:
    mean = total / repeats
    var = ((total_sq - repeats * mean ** 2) / (repeats - 1)).clamp(min=0)
    moving = var > 0  # parameters the objective never moves (dead units) have no SNR
    snr = (mean[moving].abs() / var[moving].sqrt()).mean().item() if moving.any() else 0.0
    return GradientStats(var.sum().item(), mean.pow(2).sum().item(), snr, len(mean))


@register("gradient-variance")
def gradient_variance(model, data, n: int = 100, repeats: int = 100, seed: int = 0,
                      progress: bool = False) -> GradientVarianceResult:
    """Variance and signal-to-noise ratio of the training gradient, from R fresh estimates of the
    objective's loss on one fixed batch (the comparison of gradient estimators in the discrete-latent
    seed, Bartler et al. 2019; SNR_p = |E[g_p]| / std(g_p) as in Rainforth et al. 2018, eq. 6).
    Reported separately for the encoder and the decoder: a collapsing encoder gets gradients that are
    mostly noise. The loss is the model's own objective, at the model's training step."""
    from tqdm import tqdm

    if repeats < 2:
        raise ConfigError(f"gradient variance needs at least 2 repeats, not {repeats}")
    bundle = as_bundle(model)
    model, objective, step = bundle.network, bundle.objective, bundle.step
    x, y = held_out(bundle, data, n, seed)
    groups = {"encoder": [*model.encoder_parameters(), *objective.parameters()], "decoder": model.decoder_parameters()}
    # Running sums of g and g^2 in float64: R full gradients of a large model would not fit in memory.
    sums = {g: torch.zeros(2, sum(p.numel() for p in ps), dtype=torch.float64, device=x.device)
            for g, ps in groups.items()}
    with sampling(x.device, seed):
        for _ in tqdm(range(repeats), desc="gradient variance", unit="estimate", disable=not progress, leave=False):
            model.zero_grad(set_to_none=True)
            objective.zero_grad(set_to_none=True)
            objective(model, x, y, step).loss.backward()
            for g, params in groups.items():
                flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
                sums[g][0] += flat.double()
                sums[g][1] += flat.double() ** 2
    model.zero_grad(set_to_none=True)
    objective.zero_grad(set_to_none=True)
    return GradientVarianceResult(gradient_stats(*sums["encoder"], repeats), gradient_stats(*sums["decoder"], repeats),
                                  repeats, len(x))
