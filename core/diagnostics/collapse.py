import math
from dataclasses import dataclass, field

import torch

from .active_units import THRESHOLD as AU_THRESHOLD, active_units
from .decoder_reliance import decoder_reliance
from .kl import kl
from .mutual_information import mutual_information
from . import as_bundle, register

KL_THRESHOLD = 0.01        # nats: below this a dimension costs (and carries) next to nothing
RELIANCE_THRESHOLD = 0.1   # nats per image: zeroing a dimension the decoder uses changes log p(x|z) by more


@dataclass
class CollapseReport:
    verdicts: list[str]          # per dimension: "active", "collapsed" or "unused by decoder"
    kl_per_dim: list[float]      # E_x KL(q(z_d|x) || p(z_d))
    au_variances: list[float]    # Var_x(E_q[z_d])
    zeroing_cost: list[float]    # loss in E log p(x|z) when z_d is set to 0, nats per image (< 0: zeroing helps)
    mi: float
    mi_ceiling: float
    thresholds: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # where the diagnostics disagree, in words

    def count(self, verdict: str) -> int:
        return self.verdicts.count(verdict)


@register("collapse")
@torch.no_grad()
def collapse(model, data, n: int = 1000, au_threshold: float = AU_THRESHOLD, kl_threshold: float = KL_THRESHOLD,
             reliance_threshold: float = RELIANCE_THRESHOLD) -> CollapseReport:
    """A verdict per latent dimension from three independent views: the encoder (active units: does
    E_q[z_d] vary with x?), the KL (does q(z_d|x) differ from the prior?) and the decoder (does zeroing
    z_d cost reconstruction?).

      active             the encoder varies z_d with x and the decoder uses it;
      unused by decoder  the encoder varies z_d, but zeroing it leaves log p(x|z) as it was (either sign:
                         a decoder that scores better with z_d = 0 still reads it);
      collapsed          E_q[z_d] does not vary with x (q(z_d|x) ~ the same for every x).

    Where the views disagree the report says so rather than picking one: AU counting a dimension the
    decoder ignores, KL spent on a dimension that carries no information, or a mutual-information
    estimate stuck at its log-batch ceiling, which then bounds nothing."""
    bundle = as_bundle(model)
    kls, au = kl(bundle, data, n), active_units(bundle, data, n, au_threshold)
    mi, reliance = mutual_information(bundle, data, n), decoder_reliance(bundle, data, n)
    cost = [reliance.posterior - z for z in reliance.zeroed] or [math.nan] * len(kls.per_dim)
    verdicts, flags = [], []
    if not reliance.zeroed:
        flags.append("two stochastic layers: the decoder reads z1, so zeroing a top dimension is not measured; the "
                     "verdicts are the encoder's view alone")
    for d, (k, v, c) in enumerate(zip(kls.per_dim, au.variances, cost)):
        encoder_uses, decoder_uses = v > au_threshold, abs(c) > reliance_threshold or math.isnan(c)
        verdicts.append("collapsed" if not encoder_uses else "active" if decoder_uses else "unused by decoder")
        if encoder_uses and not decoder_uses:
            flags.append(f"z{d}: AU counts it active (Var {v:.3g}), but zeroing it changes log p(x|z) by only {c:.3g} nats")
        if encoder_uses and c < -reliance_threshold:
            flags.append(f"z{d}: zeroing it raises log p(x|z) by {-c:.3g} nats: the decoder reads it, and scores the "
                         "encoder's values worse than 0")
        if not encoder_uses and k > kl_threshold:
            flags.append(f"z{d}: KL {k:.3g} nats spent, but E_q[z{d}] barely varies with x (Var {v:.3g}): "
                         "the KL buys no information")
        if not encoder_uses and decoder_uses and not math.isnan(c):
            flags.append(f"z{d}: carries no information, yet zeroing it changes log p(x|z) by {-c:+.3g} nats: the "
                         "decoder relies on its constant value")
    if mi.at_ceiling:
        flags.append(f"MI {mi.mi:.2f} nats is at its log-batch ceiling {mi.ceiling:.2f}: it says only "
                     "'at least this much', use more images")
    if au.count and reliance.gap < reliance_threshold:
        flags.append(f"{au.count} dimensions are active, but the decoder scores shuffled codes within "
                     f"{reliance.gap:.3g} nats of the true ones")
    thresholds = {"au_variance": au_threshold, "kl_nats": kl_threshold, "zeroing_cost_nats": reliance_threshold,
                  "mi_ceiling_nats": mi.ceiling}
    return CollapseReport(verdicts, kls.per_dim, au.variances, cost, mi.mi, mi.ceiling, thresholds, flags)
