"""Many diagnostics in one pass, and the headline numbers a comparison table shows. Used by
`python -m core diagnose`, the Compare page, and the precomputed diagnostics of shipped checkpoints."""
from __future__ import annotations

from dataclasses import asdict

from . import checkpoint
from .diagnostics import DIAGNOSTICS, run
from .engine import finite_or_none
from .evaluate import evaluate
from .errors import ConfigError

EVAL_N = 1000  # the fixed slice of the test set a recorded evaluation covers

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


def data_identity(data) -> dict:
    """What recorded numbers were measured on: a dataset loaded another way (the offline MNIST subset,
    another binarization) has another identity, and the numbers must be measured again."""
    return {"dataset": data.info.name, "binarize": data.spec.binarize, "normalize": data.spec.normalize,
            "n_test": len(data.test_x), "note": data.info.note}


def recorded(ckpt, data, key: str = "diagnostics"):
    """The checkpoint's recorded results under key, if they were measured on this data; else None."""
    entry = ckpt.meta.get(key)
    if isinstance(entry, dict) and entry.get("data") == data_identity(data):
        return entry.get("results")
    return None


def record(path, ckpt, data, bars: bool = False) -> dict:
    """Measure every diagnostic and the ELBO of the first EVAL_N test images, and store them in the
    checkpoint's sidecar, with the data they were measured on: what the Compare page and the lessons show
    without measuring again, and what tests/test_shipped.py re-measures. ckpt: the checkpoint at path, loaded
on the CPU. Returns the two entries."""
    identity = data_identity(data)
    entries = {
        "evaluation": {"data": identity, "results": evaluate(ckpt.model, data, n=EVAL_N).to_dict()},
        "diagnostics": {"data": identity, "results": run_all(ckpt.model, data, ckpt.objective, ckpt.step, bars=bars)},
    }
    entries = finite_or_none(entries)  # strict JSON: NaN and inf as null
    checkpoint.annotate(path, **entries)
    return entries
