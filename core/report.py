"""Many diagnostics in one pass, and the headline numbers a comparison table shows. Used by
`python -m core diagnose`, the Compare page, and the precomputed diagnostics of shipped checkpoints."""
from __future__ import annotations

from dataclasses import asdict

from .diagnostics import DIAGNOSTICS, run
from .errors import ConfigError

# What the Compare table needs; gradient variance is left to `diagnose`, being slow and noisy to compare.
COMPARE = ("iwae", "kl", "active-units", "mutual-information", "probe", "decoder-reliance", "collapse",
           "aggregate-posterior")


def run_all(model, data, objective=None, step: int = 0, names=None, options: dict | None = None,
            bars: bool = False, progress=None) -> dict:
    """{name: the diagnostic's result as a dict, or {'skipped': why}} for each name (default: all of
    them, the collapse report last since it sums up the rest). options: {name: {option: value}}.
    bars: tqdm progress bars on stderr; progress(fraction, name) is called before each diagnostic."""
    from tqdm import tqdm

    names = sorted(names or DIAGNOSTICS.names(), key=lambda n: n == "collapse")
    results = {}
    for i, name in enumerate(tqdm(names, desc="diagnostics", unit="diagnostic", leave=False, disable=not bars)):
        if progress:
            progress(i / len(names), name)
        try:
            result = run(name, model, data, objective=objective, step=step, progress=bars,
                         **(options or {}).get(name, {}))
            results[name] = asdict(result)
        except ConfigError as e:  # not defined for this model or dataset: say why, run the rest
            results[name] = {"skipped": str(e)}
    return results


def headline(results: dict) -> dict:
    """The comparison table's row: ELBO, IWAE NLL, KL, AU, MI, probe accuracy, decoder-reliance gap and
    the collapse verdict, from run_all's results (None where a diagnostic was skipped or not run)."""
    def get(name, key):
        return results.get(name, {}).get(key)

    verdicts = get("collapse", "verdicts")
    counts = None if verdicts is None else {v: verdicts.count(v) for v in ("active", "unused by decoder", "collapsed")}
    return {
        "ELBO": get("iwae", "elbo"),
        "IWAE NLL": None if get("iwae", "iwae") is None else -get("iwae", "iwae"),
        "KL": get("kl", "total"),
        "AU": get("active-units", "count"),
        "MI": get("mutual-information", "mi"),
        "probe accuracy": get("probe", "logistic_accuracy"),
        "reliance gap": get("decoder-reliance", "gap"),
        "verdict": None if counts is None else " / ".join(f"{n} {v}" for v, n in counts.items()),
    }
