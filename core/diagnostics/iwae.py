from ..evaluate import BoundResult, importance_weighted_bound
from . import as_bundle, register


def default_k(bundle) -> int:
    """1000 importance samples on a GPU, 100 on a CPU (the estimate's gap to log p(x) shrinks like 1/k)."""
    return 1000 if bundle.device.type == "cuda" else 100


@register("iwae")
def iwae(model, data, k: int | None = None, n: int = 1000, progress: bool = False) -> BoundResult:
    """The importance-weighted bound IWAE_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)] (Burda et al.
    2016, eq. 8) next to the ELBO from the same log-weights, and their gap. The proposal is the
    model's own posterior. Computed in float64 with one logsumexp over all k samples; -IWAE_k is the usual
    test NLL."""
    bundle = as_bundle(model)
    return importance_weighted_bound(bundle, data, k=k or default_k(bundle), n=n, progress=progress)
