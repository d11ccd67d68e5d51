from ..evaluate import BoundResult, importance_weighted_bound
from . import objective_or_elbo, register


def default_k(model) -> int:
    """1000 importance samples on a GPU, 100 on a CPU (the estimate's gap to log p(x) shrinks like 1/k)."""
    return 1000 if model.prior_loc.device.type == "cuda" else 100


@register("iwae")
def iwae(model, data, objective=None, k: int | None = None, n: int = 1000, progress: bool = False) -> BoundResult:
    """The importance-weighted bound IWAE_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)] (Burda et al.
    2016, eq. 8) next to the ELBO from the same log-weights, and their gap. The proposal is the
    objective's own posterior (the encoder's q when no objective is given). Computed in float64 with
    one logsumexp over all k samples; -IWAE_k is the usual test NLL."""
    objective = objective_or_elbo(objective, model)
    return importance_weighted_bound(model, objective, data, k=k or default_k(model), n=n, progress=progress)
