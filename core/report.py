"""Many diagnostics in one pass, and the headline numbers a comparison table shows. Used by
`vaelab diagnose`, the Compare page, and the precomputed diagnostics of shipped checkpoints.

Results stay typed (each diagnostic's dataclass, or Skipped) from the diagnostics to the pages and the
CLI; they become dicts only in a sidecar (to_dict) and come back with from_dict, which refuses a field
the dataclass does not have, so a renamed field fails loudly instead of blanking a column.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass

from . import checkpoint
from .bundle import as_bundle
from .config import finite_or_none
from .diagnostics import DIAGNOSTICS, run
from .evaluate import EvalResult, evaluate
from .errors import ConfigError

EVAL_N = 1000  # the fixed slice of the test set a recorded evaluation covers

# What the Compare table needs; gradient variance is left to `diagnose`, being slow and noisy to compare.
COMPARE = ("iwae", "kl", "active-units", "mutual-information", "probe", "decoder-reliance", "collapse",
           "aggregate-posterior")


@dataclass
class Skipped:
    """A diagnostic not defined for this model or dataset, and why."""
    skipped: str


def run_all(model, data, names=None, options: dict | None = None, bars: bool = False, progress=None) -> dict:
    """{name: the diagnostic's result, or Skipped(why)} for each name (default: all of them, the collapse
    report last since it sums up the rest). model: a bundle (core.bundle). options: {name: {option: value}}.
    bars: tqdm progress bars on stderr; progress(fraction, name) is called before each diagnostic."""
    from tqdm import tqdm

    bundle = as_bundle(model)
    names = sorted(names or DIAGNOSTICS.names(), key=lambda n: n == "collapse")
    results = {}
    for i, name in enumerate(tqdm(names, desc="diagnostics", unit="diagnostic", leave=False, disable=not bars)):
        if progress:
            progress(i / len(names), name)
        try:
            results[name] = run(name, bundle, data, progress=bars, **(options or {}).get(name, {}))
        except ConfigError as e:  # not defined for this model or dataset: say why, run the rest
            results[name] = Skipped(str(e))
    return results


def to_dict(results: dict) -> dict:
    """run_all's results as plain dicts, for a sidecar or JSON (NaN and inf as None)."""
    return finite_or_none({name: asdict(result) for name, result in results.items()})


def result_type(name: str) -> type:
    return typing.get_type_hints(DIAGNOSTICS.get(name))["return"]


def from_fields(cls, d: dict):
    """A dataclass from its asdict() form, nested dataclasses included. Raises ValueError on a field the
    class does not have, and TypeError on a missing one."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.init and f.name in d:
            value = d[f.name]
            values[f.name] = from_fields(hints[f.name], value) if dataclasses.is_dataclass(hints[f.name]) else value
    return cls(**values)


def from_dict(results: dict) -> dict:
    """to_dict's output back to typed results."""
    return {name: Skipped(d["skipped"]) if set(d) == {"skipped"} else from_fields(result_type(name), d)
            for name, d in results.items()}


VERDICTS = ("active", "unused by decoder", "collapsed")


def verdict_counts(results: dict) -> dict | None:
    """How many dimensions the collapse report calls active, unused by the decoder and collapsed."""
    collapse = results.get("collapse")
    if collapse is None or isinstance(collapse, Skipped):
        return None
    return {v: collapse.verdicts.count(v) for v in VERDICTS}


def headline(results: dict) -> dict:
    """The results table's row (a sweep's results.csv, and the base of the Compare table's): ELBO, IWAE NLL,
    KL, AU, MI, probe accuracy, decoder-reliance gap and the collapse verdict, from run_all's results (None
    where a diagnostic was skipped or not run)."""
    def get(name, field):
        result = results.get(name)
        return None if result is None or isinstance(result, Skipped) else getattr(result, field)

    counts = verdict_counts(results)
    iwae = get("iwae", "iwae")
    return {
        "ELBO": get("iwae", "elbo"),
        "IWAE NLL": None if iwae is None else -iwae,
        "KL": get("kl", "total"),
        "KL exact": get("kl", "exact"),
        "AU": get("active-units", "count"),
        "MI": get("mutual-information", "mi"),
        "probe accuracy": get("probe", "logistic_accuracy"),
        "reliance gap": get("decoder-reliance", "gap"),
        "verdict": None if counts is None else " / ".join(f"{n} {v}" for v, n in counts.items()),
    }


def compare_row(results: dict) -> dict:
    """The Compare page's row: headline's, with the fit in one sign convention, positive nats per image
    where lower is better, "−ELBO" beside "IWAE NLL" (−ELBO ≥ IWAE NLL ≥ −log p(x)), and a verdict short
    enough for its column (the counts that are not 0: "12 active / 4 collapsed")."""
    row = headline(results)
    elbo = row.pop("ELBO")
    counts = verdict_counts(results)
    short = None if counts is None else " / ".join(f"{n} {v.split()[0]}" for v, n in counts.items() if n)
    return {"−ELBO": None if elbo is None else -elbo, **row, "verdict": short}


def data_identity(data) -> dict:
    """What recorded numbers were measured on: a dataset loaded another way (the offline MNIST subset,
    another binarization) has another identity, and the numbers must be measured again."""
    return {"dataset": data.info.name, "binarize": data.spec.binarize, "normalize": data.spec.normalize,
            "n_test": len(data.test_x), "note": data.info.note}


def recorded(bundle, data, key: str = "diagnostics"):
    """A checkpoint's recorded results under key (typed: run_all's form, or an EvalResult), if they were
    measured on this data and still read as today's result types; else None, and they are measured again."""
    entry = bundle.meta.get(key)
    if not isinstance(entry, dict) or entry.get("data") != data_identity(data):
        return None
    try:
        results = entry["results"]
        return from_fields(EvalResult, results) if key == "evaluation" else from_dict(results)
    except (KeyError, TypeError, ValueError, ConfigError):
        return None


def record(path, bundle, data, bars: bool = False) -> dict:
    """Measure every diagnostic and the ELBO of the first EVAL_N test images, and store them in the
    checkpoint's sidecar, with the data they were measured on: what the Compare page and the lessons show
    without measuring again, and what tests/test_shipped.py re-measures. bundle: the checkpoint at path,
    loaded on the CPU. Returns the two entries as written."""
    identity = data_identity(data)
    entries = {
        "evaluation": {"data": identity, "results": evaluate(bundle, data, n=EVAL_N).to_dict()},
        "diagnostics": {"data": identity, "results": to_dict(run_all(bundle, data, bars=bars))},
    }
    entries = finite_or_none(entries)  # strict JSON: NaN and inf as None
    checkpoint.annotate(path, **entries)
    return entries
