"""Every table of docs/results.md, written from experiments/results/*.json, so that no number on the page
is copied by hand. A table sits between two markers in the page:

    <!-- table: improving_vaes_table1 -->
    | model | z=3 | ...
    <!-- /table -->

and this script rewrites what lies between them. tests/test_results_page.py fails when the page differs
from what it would write, and checks the numbers quoted in sentences (CLAIMS) the same way.

    python experiments/tables.py            # rewrite the tables of docs/results.md
    python experiments/tables.py --check    # exit 1, showing the difference, when the page is stale
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
PAGE = ROOT / "docs" / "results.md"
MARKER = re.compile(r"(<!-- table: ([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)
TABLES = {}
import improving_vaes_table1  # noqa: E402  (the paper's numbers, and which rows are ours; experiments/ is on the path)

LATENTS = improving_vaes_table1.LATENTS


def table(fn):
    TABLES[fn.__name__] = fn
    return fn


def cells(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["cells"] if path.exists() else {}


def number(value) -> float:
    return float(value)  # JSON keeps inf and nan as strings ("inf")


def rows(header: list[str], body: list[list], align: str | None = None) -> str:
    align = align or "|---|" + "---:|" * (len(header) - 1)
    return "\n".join(["| " + " | ".join(header) + " |", align] + ["| " + " | ".join(map(str, r)) + " |" for r in body])


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------- seed 002

PAPER_TABLE1 = improving_vaes_table1.PAPER  # seed 002, Table 1, nats per test image


EARLIER = improving_vaes_table1.EARLIER  # our rows beside the paper's, and the paper row each reads


def table1_order() -> list[str]:
    """The paper's rows, each of ours after the one it reads."""
    rows = []
    for row in PAPER_TABLE1:
        rows += [row] + [ours for ours, paper in EARLIER.items() if paper == row]
    return rows


@table
def improving_vaes_table1() -> str:
    done = cells("improving_vaes_table1")
    body = []
    for row in table1_order():
        paper = PAPER_TABLE1[EARLIER.get(row, row)]
        if row == "VAE original":
            body.append([row] + [f"{p:.2f}" for p in paper])
            continue
        out = []
        for z, p in zip(LATENTS, paper):
            c = done.get(f"{row} z={z}")
            out.append((f"{c['ours']:.2f}" if c else "–") + f" / {p:.2f}")
        body.append([row] + out)
    return rows(["model"] + [f"z={z}" for z in LATENTS], body)


@table
def improving_vaes_table1_iw50() -> str:
    done = cells("improving_vaes_table1")
    body = [[row] + [f"{done[f'{row} z={z}']['iw50']:.2f}" if f"{row} z={z}" in done else "–" for z in LATENTS]
            for row in table1_order() if row != "VAE original"]
    return rows(["model"] + [f"z={z}" for z in LATENTS], body)


@table
def improving_vaes_table1_100ep() -> str:
    """The paper's budget (100 epochs) beside the paper and the 2-epoch cell, with the time each took."""
    long, short = cells("improving_vaes_table1_100ep"), cells("improving_vaes_table1")
    for key, c in long.items():  # the sentence above the table
        assert abs(c["elbo"] - c["paper"]) < abs(short[key]["elbo"] - c["paper"]), f"{key}: not nearer the paper at 100 epochs"
    body = []
    for row in ("VAE implementation", "VAE tuned"):
        for z, paper in zip(LATENTS, PAPER_TABLE1[row]):
            key = f"{row} z={z}"
            c, s = long.get(key), short.get(key)
            body.append([row, z, f"{paper:.2f}", f"{c['elbo']:.2f}" if c else "running",
                         f"{s['elbo']:.2f}" if s else "–", f"{c['iw50']:.2f}" if c else "–",
                         f"{c['kl']:.2f}" if c else "–", c["variant"] or "–" if c else "–",
                         minutes(c["train_seconds"]) if c else "–"])
    return rows(["row", "z", "paper", "ours, 100 epochs", "ours, 2 epochs", "IW-50, 100 epochs", "KL",
                 "rate picked", "training time"], body, "|---|---:|---:|---:|---:|---:|---:|---|---:|")


@table
def improving_vaes_frey() -> str:
    ada, adam = cells("improving_vaes_frey"), cells("improving_vaes_frey_adam")
    body = []
    for z in (2, 5, 10, 20):
        a, b = ada[f"z={z}"], adam[f"z={z}"]
        body.append([z, f"{a['paper']:.2f}", f"{a['test_neg_elbo']:.2f}", f"{a['train_neg_elbo']:.2f}",
                     f"{a['test_kl']:.2f}", f"{b['test_neg_elbo']:.2f}", f"{b['train_neg_elbo']:.2f}", f"{b['test_kl']:.2f}"])
    return rows(["z", "paper", "ours (Adagrad), held out", "train", "KL", "ours (Adam 1e-3), held out", "train", "KL"],
                body, "|---:|---:|---:|---:|---:|---:|---:|---:|")


# ---------------------------------------------------------------- seed 004

MU_MODELS = ("VAE", "beta-VAE", "mu-VAE#1", "mu-VAE#2")


def mu_vae_rows(done: dict) -> list[list]:
    body = []
    for label in MU_MODELS:
        out = [label]
        for name in ("mnist", "fashion-mnist"):
            c = done.get(f"{name} {label}")
            out += (["–"] * 5 if c is None else
                    [f"{c['joint']:.2f}", f"{c['probe']:.2f}", f"{c['paper']:.2f}", f"{c['test_mse']:.1f}", f"{c['test_kl']:.1f}"])
        body.append(out)
    return body


MU_HEADER = ["model", "MNIST: joint classifier", "post-hoc probe", "paper", "squared error", "KL",
             "Fashion: joint classifier", "post-hoc probe", "paper", "squared error", "KL"]


@table
def mu_vae_probe() -> str:
    return rows(MU_HEADER, mu_vae_rows(cells("mu_vae_probe")))


@table
def mu_vae_probe_5ep() -> str:
    """5 epochs beside the paper and the 1-epoch run: the joint classifier's accuracy and the time."""
    long, short = cells("mu_vae_probe_5ep"), cells("mu_vae_probe")
    body = []
    for name in ("mnist", "fashion-mnist"):
        for label in MU_MODELS:
            c, s = long.get(f"{name} {label}"), short.get(f"{name} {label}")
            body.append([name, label, f"{s['paper']:.2f}", f"{c['joint']:.2f}" if c else "running", f"{s['joint']:.2f}",
                         f"{c['probe']:.2f}" if c else "–", f"{c['test_kl']:.1f}" if c else "–",
                         minutes(c["train_seconds"]) if c else "–"])
    return rows(["data", "model", "paper", "joint classifier, 5 epochs", "1 epoch", "probe, 5 epochs", "KL",
                 "training time"], body, "|---|---|---:|---:|---:|---:|---:|---:|")


# ---------------------------------------------------------------- seed 003

@table
def discrete_curves() -> str:
    body = []
    for name, c in cells("discrete_curves").items():
        for i, r in enumerate(x for x in c["rows"] if x.get("epoch") in (0, 1, 10, 20)):
            loss = "–" if "loss" not in r else f"{r['loss']:.1f}"
            ll = "–" if "log_likelihood" not in r else f"{r['log_likelihood']:.1f}"
            body.append([name if i == 0 else "", r["epoch"], loss, ll, f"{r['var_weights']:.3g}",
                         f"{r['var_logits']:.3g}", f"{r['q(1-q)']:.3f}"])
    return rows(["run", "epoch", "loss (−ELBO)", "E_q ln p(x|z)", "Var, encoder weights", "Var, logits", "q(1−q)"],
                body, "|---|---:|---:|---:|---:|---:|---:|")


@table
def discrete_curves_rho() -> str:
    from scipy.stats import spearmanr
    labels = {"FC BVAE mnist": "FC BVAE, MNIST", "FC CVAE mnist": "FC CVAE, MNIST", "FC BVAE fashion": "FC BVAE, Fashion",
              "CNN BVAE mnist": "CNN BVAE, MNIST", "CNN CVAE mnist": "CNN CVAE, MNIST"}
    body = []
    for name, c in cells("discrete_curves").items():
        logged = [r for r in c["rows"] if "diverged" not in r and r["epoch"] > 0]
        out = [labels.get(name, name)]
        for key in ("var_weights", "var_logits", "q(1-q)"):
            values = [r[key] for r in logged]
            rho = spearmanr([r["epoch"] for r in logged], values).statistic
            out.append(f"{rho:+.2f}" if key == "q(1-q)" else f"{rho:+.2f} ({values[0]:.3g} → {values[-1]:.3g})")
        body.append(out)
    return rows(["run", "Var, encoder weights: ρ (epoch 1 → last)", "Var, logits: ρ (epoch 1 → last)", "q(1−q): ρ"],
                body, "|---|---|---|---:|")


@table
def discrete_curves_300ep() -> str:
    """Seed 003's 300 epochs beside our 20, with the time each took."""
    long, short = cells("discrete_curves_300ep"), cells("discrete_curves")
    body = []
    for name in ("FC BVAE mnist", "FC CVAE mnist"):
        c, s = long.get(name), short[name]
        last_s = [r for r in s["rows"] if "loss" in r][-1]
        if c is None:
            body.append([name, "running", "–", "–", f"{last_s['loss']:.1f}", "–", "–"])
            continue
        last = [r for r in c["rows"] if "loss" in r][-1]
        body.append([name, last["epoch"], f"{last['loss']:.1f}", f"{last['log_likelihood']:.1f}", f"{last_s['loss']:.1f}",
                     f"{last['var_weights']:.3g}", minutes(c["train_seconds"])])
    return rows(["run", "epochs", "loss (−ELBO)", "E_q ln p(x|z)", "loss at 20 epochs", "Var, encoder weights",
                 "training time"], body, "|---|---:|---:|---:|---:|---:|---:|")


@table
def discrete_estimators() -> str:
    body = []
    for key, c in cells("discrete_estimators").items():
        latent, estimator = key.split(" ", 1)
        body.append([latent, estimator.replace("tau", "τ"), f"{c['elbo']:.2f}", f"{c['kl']:.2f}",
                     f"{c['var_start']:.3g}", f"{c['var_end']:.3g}", f"{1000 * c['seconds_per_step']:.0f}"])
    return rows(["latent", "estimator", "test ELBO", "KL", "gradient variance, start", "end", "ms / step"], body,
                "|---|---|---:|---:|---:|---:|---:|")


# ---------------------------------------------------------------- seeds 000 / 001

@table
def vlae_nll() -> str:
    done = cells("vlae_nll")
    body = []
    for label, name in (("VAE", "VAE (no T)"), ("VLAE", "VLAE"), ("SA-VAE", f"SA-VAE (step {alpha_pick()})"),
                        ("VAE+HF", "VAE + Householder flow"), ("VAE+IAF", "VAE + IAF"), ("VLAE+CG", "VLAE + CG (Polak-Ribière)")):
        if label == "VAE":
            c = done["VAE"]
            body.append([name, f"{c['nll']:.2f}", "", "", "", f"{1000 * c['seconds_per_step']:.0f} ms"])
            continue
        ts = [t for t in (1, 2, 4, 8) if f"{label} (T={t})" in done]
        best = min(done[f"{label} (T={t})"]["nll"] for t in ts)
        out = []
        for t in (1, 2, 4, 8):
            c = done.get(f"{label} (T={t})")
            out.append("" if c is None else f"**{c['nll']:.2f}**" if label == "VLAE" and c["nll"] - best < 0.05 else f"{c['nll']:.2f}")
        times = " / ".join(f"{1000 * done[f'{label} (T={t})']['seconds_per_step']:,.0f}" for t in ts)
        body.append([name] + out + [times + " ms"])
    return rows(["model", "T = 1", "T = 2", "T = 4", "T = 8", "time per step at T = 1 / 2 / 4 / 8"], body,
                "|---|---:|---:|---:|---:|---|")


def alpha_pick() -> float:
    ok = [c for c in cells("sa_vae_step").values() if not c["diverged"] and c.get("grad", "per-image") == "per-image"]
    return min(ok, key=lambda c: c["nll"])["alpha"]


GRAD_NAMES = {"per-image": "per image (Kim et al.)", "batch-mean": "batch mean (authors' code, ascent)",
              "batch-mean-as-written": "batch mean, as written (descent)"}


@table
def sa_vae_step() -> str:
    body = []
    for c in cells("sa_vae_step").values():
        grad = c.get("grad", "per-image")
        alpha = f"{c['alpha']:g}" + (" (the supplement's)" if c["alpha"] == 0.0005 else "")
        body.append([GRAD_NAMES[grad], alpha, f"{c['moved']:.3g}", f"{c['elbo_gain']:.3g}",
                     f"{number(c['nll']):.2f}" + (" (diverged)" if c["diverged"] else "")])
    return rows(["gradient", "α", "‖λ_T − λ_0‖ per image", "ELBO gain (nats)", "IW-100 NLL"], body, "|---|---:|---:|---:|---:|")


VLAE_INIT_ROWS = {  # the page's label: the JSON's
    "recipe as worded, authors' scale": "recipe (as worded), pixel RMS",
    "recipe as the authors' code, authors' scale": "recipe (authors' code), pixel RMS",
    "normalization only, authors' scale": "normalization only, pixel RMS",
    "neither": "neither",
    "init only": "init only",
    "recipe as worded, unit image norm": "recipe (as worded)",
    "recipe as the authors' code, unit image norm": "recipe (authors' code)",
    "normalization only, unit image norm": "normalization only",
}
DATA_NAMES = {"pixel-rms": "pixel RMS", "mean": "unit image norm", "none": "pixels in [0, 1]"}


@table
def vlae_init() -> str:
    done = cells("vlae_init")
    body = []
    for label, key in VLAE_INIT_ROWS.items():
        c = done.get(key)
        if c is None:
            body.append([label, "", "", "running", "", "", ""])
            continue
        at = {s["step"]: s["ratio"] for s in c["gradient_sources"]}
        ratio = " / ".join("∞" if math.isinf(number(at[s])) else f"{number(at[s]):.2g}" for s in (0, 10, 100, c["steps"]))
        body.append([label, f"`{c['init']}`", DATA_NAMES[c["normalize"]], f"{c['squared_error_at_step_0']:.2f}", ratio,
                     f"{c['start']['active_units']} → {c['end']['active_units']}",
                     f"{c['start']['kl']:.2f} → {c['end']['kl']:.2f}"])
    return rows(["run", "init", "data", "squared error at step 0", "KL/recon gradient at step 0 / 10 / 100 / 2000",
                 "AU start → end", "KL start → end"], body, "|---|---|---|---:|---|---:|---:|")


@table
def vlae_gaussian() -> str:
    new, old = cells("vlae_gaussian"), cells("vlae_gaussian_image_norm")
    body = []
    for name in ("MNIST", "Fashion-MNIST", "Omniglot"):
        for data, c in (("pixel RMS (authors')", new.get(name)), ("unit image norm", old.get(name))):
            if c is None:
                body.append([name, data, "running", "", "", "", "", ""])
                continue
            body.append([name, data, f"{c['nll']:.2f}", f"{c['nll'] + c['pixel_units_offset']:,.1f}", f"{c['scale']:.4f}",
                         f"{c['kl']:.2f}" if "kl" in c else "–", c.get("active_units", "–"), minutes(c["train_seconds"])])
    return rows(["dataset", "data", "IW-100 NLL (normalized units)", "in pixel units", "scale", "KL", "active units (of 20)",
                 "training time"], body, "|---|---|---:|---:|---:|---:|---:|---:|")


# ---------------------------------------------------------------- what the sweeps would cost

def per_step(run: dict) -> float:
    return run["train_seconds"] / run["steps"]


# ---------------------------------------------------------------- He et al. 2019

import lagging_omniglot  # noqa: E402


@table
def lagging_omniglot_table() -> str:
    """He et al.'s Omniglot rows beside ours at our budget: NLL (IW), KL, minibatch MI and AU."""
    done = cells("lagging_omniglot")
    body = []
    for row, paper in lagging_omniglot.PAPER.items():
        c = done.get(row)
        nll, kl, mi = (f"{paper[0]:.2f}", f"{paper[1]:.1f}", f"{paper[2]:.1f}") if paper else ("–", "–", "–")
        ours = ([f"{c['nll']:.2f}", f"{c['kl']:.2f}", f"{c['mi']:.2f}", f"{c['au']} / 32",
                 f"{c['aggressive_steps']:,}" if c["aggressive_steps"] else "–", f"{c['seconds_per_step'] * 1000:.0f} ms"]
                if c else ["running"] + ["–"] * 5)
        body.append([row, nll, ours[0], kl, ours[1], mi, ours[2], ours[3], ours[4], ours[5]])
    return rows(["row", "NLL, paper", "NLL, ours", "KL, paper", "KL, ours", "MI, paper", "MI, ours", "AU, ours",
                 "aggressive steps", "median step"], body, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


@table
def sweep_costs() -> str:
    """Each reproduction sweep at its spec's budget, from the per-step times measured here (one core of this
    2-core CPU, often shared), summed over its trials: single-core hours, before evaluation."""
    t1 = cells("improving_vaes_table1")
    table1 = []  # every trial of the sweep: each variant of each cell (all rates, all noise levels)
    for row in PAPER_TABLE1:
        if row == "VAE original":
            continue
        for z in LATENTS:
            c = t1.get(f"{row} z={z}") or t1.get(f"IWAE, one stochastic layer z={z}")  # until the two-layer row is in
            if row in ("VAE implementation", "beta-VAE"):  # the sweep trains every rate; the script only the pick
                table1 += [per_step(c)] * 3
            else:                                          # DVAE: every noise level in both
                table1 += [per_step(v) for v in c["variants"].values()]
    mu = [per_step(c) for c in cells("mu_vae_probe").values()]
    vlae = [c["seconds_per_step"] for c in cells("vlae_nll").values()]
    two_layer = all(f"IWAE z={z}" in t1 for z in LATENTS)
    body = [
        ["improving_vaes_table1", len(table1), "100 epochs (the paper's)", "60,000", f"{statistics.median(table1) * 1000:.0f} ms",
         f"{sum(table1) * 60_000 / 3600:,.0f}", "the 2-epoch cells' runs" + ("" if two_layer else " (IWAE: the one-layer cells)")],
        ["mu_vae_probe", len(mu), "1 epoch (the paper gives none)", "938", f"{statistics.median(mu) * 1000:.0f} ms",
         f"{sum(mu) * 938 / 3600:,.1f} (each further epoch as much)", "the 1-epoch runs"],
        ["vlae_nll", len(vlae), "2,000 epochs (the supplement's maximum)", "938,000", f"{statistics.median(vlae) * 1000:.0f} ms",
         f"{sum(vlae) * 938_000 / 3600:,.0f}", "the 1,000-step runs' median step"],
    ]
    return rows(["sweep (`experiments/sweeps/`)", "trials", "budget", "steps a trial", "median step", "one core, hours",
                 "times from"], body, "|---|---:|---|---:|---:|---:|---|")


# ---------------------------------------------------------------- numbers quoted in sentences

CLAIMS = []  # each returns fragments of sentences ("|" between them) that the page must contain word for word
WORDS = {n: w for n, w in enumerate("no one two three four five six seven eight".split())}


def claim(fn):
    CLAIMS.append(fn)
    return fn


def z_list(zs) -> str:
    zs = [str(z) for z in zs]
    return zs[0] if len(zs) == 1 else ", ".join(zs[:-1]) + " and " + zs[-1]


@claim
def paper_iwae_below_its_vae() -> str:
    below = [z for z, i, v in zip(LATENTS, PAPER_TABLE1["IWAE"], PAPER_TABLE1["VAE implementation"]) if i < v]
    return f"Table 1 has IWAE *below* its VAE implementation at z = {z_list(below)}"


@claim
def table1_rows_losing_past_z20() -> str:
    t = cells("improving_vaes_table1")
    change = {r: t[f"{r} z=20"]["ours"] - t[f"{r} z=200"]["ours"] for r in table1_order()
              if f"{r} z=20" in t and f"{r} z=200" in t}
    lose = [v for v in change.values() if v > 0]
    return (f"Of our {WORDS[len(change)]} trained rows, {WORDS[len(lose)]} lose from z = 20 to 200 "
            f"(by {min(lose):.1f} to {max(lose):.0f} nats)")


@claim
def iwae_against_tuned() -> str:
    t = cells("improving_vaes_table1")
    parts = []
    for row in ("IWAE", "IWAE, one stochastic layer"):
        gaps = {z: t[f"{row} z={z}"]["ours"] - t[f"VAE tuned z={z}"]["elbo"] for z in LATENTS}
        below = [z for z, g in gaps.items() if g < 0]
        above = [z for z, g in gaps.items() if g >= 0]
        best = max(LATENTS, key=lambda z: t[f"{row} z={z}"]["ours"])
        parts.append(f"below the tuned VAE's ELBO at z = {z_list(below)} (by {', '.join(f'{-gaps[z]:.1f}' for z in below)} "
                     f"nats) and above it at z = {z_list(above)} (by {', '.join(f'{gaps[z]:.1f}' for z in above)}); its best is at "
                     f"z = {best} ({t[f'{row} z={best}']['ours']:.1f})".replace("-", "−"))
    return "|".join(parts)


@claim
def iwae_past_z20() -> str:
    t = cells("improving_vaes_table1")
    return f"which gains there and ours does not ({t['IWAE z=20']['ours']:.1f} to {t['IWAE z=200']['ours']:.1f})".replace("-", "−")


def weight_variance_trend(cell: dict) -> tuple[float, float, float]:
    """Spearman's rho of the encoder weights' gradient variance with the epoch (epoch 1 on), first, last."""
    from scipy.stats import spearmanr
    logged = [r for r in cell["rows"] if "loss" in r]
    values = [r["var_weights"] for r in logged]
    return spearmanr([r["epoch"] for r in logged], values).statistic, values[0], values[-1]


@claim
def discrete_300ep_against_fig6() -> str:
    """Seed 003's 300 epochs: where the runs end beside Fig. 6's axes, and whether the variance falls."""
    long = cells("discrete_curves_300ep")
    last = {name: [r for r in long[name]["rows"] if "loss" in r][-1] for name in ("FC BVAE mnist", "FC CVAE mnist")}
    trends = {name: weight_variance_trend(long[name]) for name in last}
    short = weight_variance_trend(cells("discrete_curves")["FC BVAE mnist"])
    b, c = last["FC BVAE mnist"], last["FC CVAE mnist"]
    (rb, b0, b1), (rc, c0, c1) = trends["FC BVAE mnist"], trends["FC CVAE mnist"]

    def n(value: float, form: str = ".1f") -> str:
        return f"{value:{form}}".replace("-", "−")
    return (f"the FC CVAE's loss ({n(c['loss'])}) lies between the axis's 200 and 140, and its log-likelihood "
            f"({n(c['log_likelihood'])}) inside −50 to −150|the FC BVAE's loss ({n(b['loss'])}) is below the "
            f"axis's lowest tick, 140, while its log-likelihood ({n(b['log_likelihood'])}) is inside"
            f"|ρ {n(rb, '+.2f')} for the BVAE, {b0:.4f} → {b1:.4f}; {n(rc, '+.2f')} for the CVAE, {c0:.4f} → {c1:.4f}"
            f"|over its first 20 epochs the BVAE's rose (ρ {n(short[0], '+.2f')}")


@claim
def implementation_row_at_100_epochs() -> str:
    """The cells of the implementation row finished so far, against the paper's."""
    t = cells("improving_vaes_table1_100ep")
    gaps = {z: t[k]["elbo"] - t[k]["paper"] for z in LATENTS if (k := f"VAE implementation z={z}") in t}
    near = [z for z, g in gaps.items() if abs(g) < 0.6]
    far = [z for z in gaps if z not in near]
    text = f"the implementation row's cells are within 0.6 nats of the paper at z = {z_list(near)}"
    above = [z for z in near if gaps[z] > 0]
    if len(above) == 1:
        text += f" (z = {above[0]} is {gaps[above[0]]:.2f} above it)"
    elif above:
        text += f" (z = {z_list(above)} are {z_list([f'{gaps[z]:.2f}' for z in above])} above it)"
    return text + "".join(f", and {abs(gaps[z]):.1f} {'below' if gaps[z] < 0 else 'above'} it at z = {z}" for z in far)


@claim
def tuned_row_at_100_epochs() -> str:
    t = cells("improving_vaes_table1_100ep")
    gaps = {z: t[f"VAE tuned z={z}"]["elbo"] - t[f"VAE tuned z={z}"]["paper"] for z in LATENTS}
    near = [z for z, g in gaps.items() if abs(g) < 0.4]
    far = [z for z in LATENTS if z not in near]
    return (f"the tuned row is within 0.4 nats of the paper at z = {z_list(near)}, and "
            + ", ".join(f"{abs(gaps[z]):.1f} {'below' if gaps[z] < 0 else 'above'} it at z = {z}" for z in far))


@claim
def dvae_below_tuned() -> str:
    t = cells("improving_vaes_table1")
    gaps = [t[f"VAE tuned z={z}"]["ours"] - t[f"DVAE z={z}"]["ours"] for z in LATENTS]
    assert all(g > 0 for g in gaps), "the DVAE sentence says it is below the tuned VAE at every z"
    return f"the best DVAE is {', '.join(f'{g:.1f}' for g in gaps)} nats *below* the tuned VAE it modifies at z = {z_list(LATENTS)}"


@claim
def table1_run_times() -> str:
    runs = [v for c in cells("improving_vaes_table1").values() for v in c["variants"].values()]
    seconds = [v["train_seconds"] for v in runs]
    return f"their training took {min(seconds):.0f} s to {max(seconds) / 60:.1f} minutes a run"


@claim
def vlae_ahead() -> str:
    v = cells("vlae_nll")
    vlae = {t: v[f"VLAE (T={t})"]["nll"] for t in (1, 2, 4, 8)}
    others = {k: c["nll"] for k, c in v.items() if not k.startswith("VLAE")}
    best_other = {}
    for k, nll in others.items():
        model = k.split(" (")[0]
        best_other[model] = min(nll, best_other.get(model, math.inf))
    overall = [b - n for n in vlae.values() for b in best_other.values()]
    same_t = [min(nll for k, nll in others.items() if k.endswith(f"(T={t})") or k == "VAE") - n for t, n in vlae.items()]
    return (f"Every VLAE row is {min(overall):.1f} to {max(overall):.1f} nats ahead of every other model's best "
            f"(VLAE + CG aside), and {min(same_t):.1f} to {max(same_t):.1f} nats ahead of the best other model at the same T")


@claim
def discrete_steps_per_epoch() -> str:
    n = {c["steps_per_epoch"] for c in cells("discrete_curves").values()}
    assert len(n) == 1
    return f"batch 2048 ({n.pop()} steps an epoch)"


@claim
def cnn_bvae_kl() -> str:
    rows_ = [r for r in cells("discrete_curves")["CNN BVAE mnist"]["rows"] if r["epoch"] >= 4 and "loss" in r]
    kl = [r["loss"] + r["log_likelihood"] for r in rows_]  # loss = recon + KL, log-likelihood = -recon
    return f"from epoch 4 on its KL is {min(kl):.3f} to {max(kl):.3f} nats"


@claim
def tuned_beats_implementation() -> str:
    t = cells("improving_vaes_table1")
    ours = [t[f"VAE tuned z={z}"]["ours"] - t[f"VAE implementation z={z}"]["ours"] for z in LATENTS]
    paper = [a - b for a, b in zip(PAPER_TABLE1["VAE tuned"], PAPER_TABLE1["VAE implementation"])]
    assert min(ours) > 0, "the sentence says tuned beats the implementation at every z"
    return f"by {min(ours):.0f} to {max(ours):.0f} nats at our budget (the paper: {min(paper):+.1f} to {max(paper):+.1f} nats".replace("-", "−")


@claim
def cnn_best_at_z200() -> str:
    t = cells("improving_vaes_table1")
    best = max((r for r in table1_order() if f"{r} z=200" in t), key=lambda r: t[f"{r} z=200"]["ours"])
    assert best == "VAE CNN"
    return (f"our best model at z = 200 ({t['VAE CNN z=200']['ours']:.1f} against the tuned MLP's "
            f"{t['VAE tuned z=200']['ours']:.1f})").replace("-", "−")


@claim
def mlp_rows_past_z20() -> str:
    t = cells("improving_vaes_table1")
    loss = {r: t[f"{r} z=20"]["ours"] - t[f"{r} z=200"]["ours"] for r in ("VAE implementation", "VAE tuned")}
    paper = {r: PAPER_TABLE1[r][3] - PAPER_TABLE1[r][4] for r in loss}
    assert round(paper["VAE implementation"], 1) == round(paper["VAE tuned"], 1)
    return (f"The implementation gets worse from z = 20 to 200 by {loss['VAE implementation']:.0f} nats, and the tuned "
            f"MLP by {loss['VAE tuned']:.0f}** (the paper: {-paper['VAE tuned']:.1f}").replace("-", "−")


@claim
def paper_rows_past_z20() -> str:
    change = {r: p[3] - p[4] for r, p in PAPER_TABLE1.items()}  # > 0: worse at 200 (the cited row too)
    lose = [v for v in change.values() if v > 0]
    gain = {r: -v for r, v in change.items() if v <= 0}
    return (f"In the paper, {WORDS[len(lose)]} of its {WORDS[len(change)]} rows lose from z = 20 to z = 200 (by "
            f"{min(lose):.1f} to {max(lose):.1f} nats) and {WORDS[len(gain)]} gain (CNN\n  +{gain['VAE CNN']:.1f}, "
            f"IWAE +{gain['IWAE']:.1f})")


@claim
def estimators_compared() -> str:
    e = cells("discrete_estimators")
    b = {k.split(" ", 1)[1]: c for k, c in e.items() if k.startswith("bernoulli ")}
    cat = {k.split(" ", 1)[1]: c for k, c in e.items() if k.startswith("categorical ")}
    paper, loo, flat = b["importance sampling, q_I = q"], b["REINFORCE, leave-one-out baseline"], b["importance sampling, q_I at temperature 2"]
    assert max(c["elbo"] for c in cat.values()) == cat["importance sampling, q_I = q"]["elbo"], "the paper's is the best categorical"
    ms = [1000 * c["seconds_per_step"] for c in e.values()]
    return (f"variance is 10{'⁵' if 5 <= math.log10(paper['var_start'] / loo['var_start']) < 6 else '?'} times the leave-one-out's at "
            f"the start and {paper['var_end'] / loo['var_end']:.0f} times it at the end (Bernoulli), yet its\n  ELBO after 5 epochs "
            f"is within {max(c['elbo'] for c in b.values()) - paper['elbo']:.1f} nats of the best (Bernoulli) or the best (categorical)"
            f"|by {paper['elbo'] - flat['elbo']:.0f} nats (Bernoulli) and {cat['importance sampling, q_I = q']['elbo'] - cat['importance sampling, q_I at temperature 2']['elbo']:.0f} nats (categorical); "
            f"with Bernoulli bits its\n  variance rises {flat['var_end'] / flat['var_start']:.1f}-fold"
            f"|({min(ms):.0f} to {max(ms):.0f} ms, the slowest {max(ms) / min(ms):.2f} times the fastest)")


@claim
def vlae_row_costs() -> str:
    v = cells("vlae_nll")
    return (f"T = 8 gains {v['VLAE (T=4)']['nll'] - v['VLAE (T=8)']['nll']:.2f} nats over T = 4 at "
            f"{v['VLAE (T=8)']['seconds_per_step'] / v['VLAE (T=4)']['seconds_per_step']:.1f} times the time"
            f"|A VLAE step at T = 4 costs {v['VLAE (T=4)']['seconds_per_step'] / v['VAE']['seconds_per_step']:.0f} times the VAE's")


@claim
def vlae_gaussian_uses_its_code() -> str:
    new, old = cells("vlae_gaussian"), cells("vlae_gaussian_image_norm")
    names = ("MNIST", "Fashion-MNIST", "Omniglot")
    assert all(new[n]["active_units"] == 20 for n in names), "every unit active on all three"
    better = [old[n]["nll"] + old[n]["pixel_units_offset"] - new[n]["nll"] - new[n]["pixel_units_offset"] for n in names]
    assert min(better) >= 2000
    kl = [new[n]["kl"] for n in names]
    return f"with a KL of {min(kl):.0f} to {max(kl):.0f} nats"


@claim
def frey_collapse_and_adam() -> str:
    ada, adam = cells("improving_vaes_frey").values(), cells("improving_vaes_frey_adam").values()
    assert all(c["test_kl"] < 0.005 for c in ada) and len({c["lr"] for c in ada}) == 1
    test, train = {round(c["test_neg_elbo"], 1) for c in ada}, [c["test_kl"] for c in adam]
    assert len(test) == 1
    held = [c["test_neg_elbo"] for c in adam]
    trained = {round(c["train_neg_elbo"], 1) for c in adam}
    assert len(trained) == 1
    return (f"KL = 0.00 nats, and −ELBO is {test.pop():.1f} for every z|The rate picked was {next(iter(ada))['lr']} for every z"
            f"|KL {min(train):.1f} to {max(train):.1f} nats at every z, and −ELBO {min(held):.1f} to {max(held):.1f} on\n  the held-out "
            f"faces and {trained.pop():.1f} on the training faces")


MU_NAMES = {"VAE": "VAE", "beta-VAE": "β-VAE", "mu-VAE#1": "μ-VAE#1", "mu-VAE#2": "μ-VAE#2"}


@claim
def mu_vae_ranks() -> str:
    m = cells("mu_vae_probe")
    ranks = {}
    for ds in ("mnist", "fashion-mnist"):
        joint = {label: m[f"{ds} {label}"]["joint"] for label in MU_MODELS}
        ranks[ds] = sorted(joint, key=joint.get, reverse=True)
        paper = {label: m[f"{ds} {label}"]["paper"] for label in MU_MODELS}
        assert ranks[ds] == sorted(paper, key=paper.get, reverse=True), f"{ds}: the paper's order"
    kl = {label: m[f"mnist {label}"]["test_kl"] for label in MU_MODELS}
    fashion = [m[f"fashion-mnist {label}"]["joint"] for label in ranks["fashion-mnist"]]
    gaps = [c["paper"] - c["joint"] for c in m.values()]
    probes = [m[f"mnist {label}"]["probe"] for label in MU_MODELS]
    return (MU_NAMES[ranks["mnist"][0]] + " >\n" + " > ".join(MU_NAMES[label] for label in ranks["mnist"][1:])
            + f"|far higher ({kl['mu-VAE#1']:.0f} and {kl['mu-VAE#2']:.0f} nats against the VAE's {kl['VAE']:.0f})"
            + f"|the lowest KL ({kl['beta-VAE']:.1f} nats)"
            + f"|same way ({z_list([f'{a:.1f}' for a in fashion])}"
            + f"|{fashion[0] - fashion[1]:.2f} points above #1"
            + f"|Our accuracies are {min(gaps):.0f} to {max(gaps):.0f} points below the paper's"
            + f"|within {max(probes) - min(probes):.0f} points on MNIST ({min(probes):.1f} to {max(probes):.1f})")


@claim
def discrete_curve_upticks() -> str:
    d = cells("discrete_curves")

    def ups(name):
        rows_ = [r for r in d[name]["rows"] if "loss" in r]
        return [(r["epoch"], r["loss"] - p["loss"]) for p, r in zip(rows_, rows_[1:]) if r["loss"] > p["loss"]]
    (e1, a), (e2, b) = ups("FC BVAE mnist")[0], ups("FC CVAE mnist")[0]
    (e3, c), (e4, f) = ups("FC BVAE fashion")
    assert e1 == e2
    return f"+{a:.1f} and +{b:.1f} nats at epoch {e1} (FC\n  BVAE, FC CVAE), +{c:.1f} at epoch {e3} and +{f:.1f} at {e4} (Fashion)"


@claim
def discrete_curve_variances() -> str:
    from scipy.stats import spearmanr
    d = cells("discrete_curves")

    def run(name):
        logged = [r for r in d[name]["rows"] if "diverged" not in r and r["epoch"] > 0]
        rho = spearmanr([r["epoch"] for r in logged], [r["var_weights"] for r in logged]).statistic
        return logged[0], logged[-1], rho
    (b0, b1, brho), (c0, c1, crho), (f0, f1, frho), (n0, n1, nrho) = (
        run(n) for n in ("FC BVAE mnist", "FC CVAE mnist", "FC BVAE fashion", "CNN BVAE mnist"))
    q = [x["q(1-q)"] for x in (b1, c1, f1)]
    return (f"rises slightly (ρ = {brho:+.2f}; {b0['var_weights']:.3f} at epoch 1, {b1['var_weights']:.3f} at epoch {b1['epoch']}). "
            f"The FC CVAE's falls {c0['var_weights'] / c1['var_weights']:.1f}-fold but not\n  steadily (ρ = {crho:+.2f}). "
            f"Fashion's falls {f0['var_weights'] / f1['var_weights']:.1f}-fold (ρ = {frho:+.2f}). q(1−q) is still "
            f"{min(q):.2f} to {max(q):.2f} at epoch {b1['epoch']}"
            f"|(loss {c1['loss']:.1f} against {b1['loss']:.1f} at epoch {b1['epoch']})"
            f"|does fall {n0['var_weights'] / n1['var_weights']:.0f}-fold (ρ = {nrho:+.2f})").replace("-", "−").replace("−fold", "-fold")


def ratios_from_step_10(key: str) -> list[float]:
    return [number(g["ratio"]) for g in cells("vlae_init")[key]["gradient_sources"] if g["step"] >= 10]


@claim
def vlae_init_ratio_at_authors_scale() -> str:
    calm = [r for key in ("recipe (authors' code), pixel RMS", "normalization only, pixel RMS") for r in ratios_from_step_10(key)]
    peak = max(ratios_from_step_10("recipe (as worded), pixel RMS"))
    end = [cells("vlae_init")[key]["gradient_sources"][-1]["ratio"] for key in VLAE_INIT_ROWS.values() if "pixel RMS" in key]
    return (f"scale it stays between {min(calm):.1f} and {max(calm):.1f} from step 10 on (the init as worded peaks at "
            f"{peak:.1f} in the first steps)\n  and is {min(end):.2f} to {max(end):.2f} at step 2,000")


@claim
def vlae_init_ratio_at_old_scale() -> str:
    old = [r for key in ("recipe (as worded)", "recipe (authors' code)", "normalization only")
           for r in ratios_from_step_10(key) if math.isfinite(r)]
    return f"step 10 on stays between {min(old):.1f} and {max(old):,.0f}"


# ---------------------------------------------------------------- the page

def render(text: str) -> str:
    """The page with every marked table rewritten from the results."""
    def replace(match):
        name = match.group(2)
        if name not in TABLES:
            raise KeyError(f"docs/results.md names a table this script does not write: {name!r}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"
    return MARKER.sub(replace, text)


@claim
def lagging_vae_row() -> str:
    c = cells("lagging_omniglot")["VAE"]
    nll, kl, mi = c["paper"]
    return (f"our VAE's NLL is {c['nll'] - nll:.1f} nats above the paper's, and it keeps less of its code: KL "
            f"{c['kl']:.2f} nats against {kl}, MI {c['mi']:.2f} against {mi}|active units count {c['au']} of 32")


def gain_over_vae(row: str) -> str:
    """What a row of He et al.'s table adds to the plain VAE's KL and MI and takes from its NLL, ours beside the
    paper's, in the words the page says it."""
    c = cells("lagging_omniglot")
    vae, other = c["VAE"], c[row]
    (pn, pk, pm), (an, ak, am) = vae["paper"], other["paper"]
    return (f"adds {other['kl'] - vae['kl']:.2f} nats of KL and {other['mi'] - vae['mi']:.2f} of MI (the paper: "
            f"{ak - pk:.1f} and {am - pm:.1f}) and lowers the NLL by {vae['nll'] - other['nll']:.2f} nats (the paper: "
            f"{pn - an:.2f})")


@claim
def lagging_anneal_gain() -> str:
    return "annealing " + gain_over_vae("VAE + anneal")


@claim
def lagging_aggressive_gain() -> str:
    """Aggressive training beside the plain VAE, and how long the encoder trained aggressively."""
    c = cells("lagging_omniglot")
    vae, agg = c["VAE"], c["Aggressive"]
    assert agg["kl"] > vae["kl"] and agg["mi"] > vae["mi"] and agg["nll"] < vae["nll"], "aggressive helps on all three"
    return ("aggressive training " + gain_over_vae("Aggressive")
            + f"|the encoder trained aggressively for the first {agg['aggressive_steps']:,} "
            f"steps, {agg['inner_steps']:,} inner steps in all ({agg['inner_steps'] / agg['aggressive_steps']:.1f} a step)"
            f"|{agg['train_seconds'] / 60:.0f} minutes against the plain VAE's {vae['train_seconds'] / 60:.0f}")


@claim
def lagging_aggressive_anneal() -> str:
    """Aggressive training with the KL warm-up, beside aggressive alone, ours and the paper's."""
    c = cells("lagging_omniglot")
    agg, both = c["Aggressive"], c["Aggressive + anneal"]
    pn, (bn, bk, bm) = agg["paper"][0], both["paper"]
    assert both["kl"] > agg["kl"] and both["mi"] > agg["mi"] and both["nll"] > agg["nll"], "more code, worse NLL"
    return (f"with the KL warm-up as well, aggressive training keeps KL {both['kl']:.2f} and MI {both['mi']:.2f} "
            f"nats (alone {agg['kl']:.2f} and {agg['mi']:.2f}; the paper: {bk} and {bm} both ways), all "
            f"{both['au']} units active|its NLL is {both['nll']:.2f}, {both['nll'] - agg['nll']:.2f} nats above "
            f"aggressive alone (the paper: {bn - pn:.2f})|aggressive for its first {both['aggressive_steps']:,} "
            f"steps ({both['inner_steps']:,} inner steps), {both['train_seconds'] / 60:.0f} minutes")


@claim
def lagging_remedies() -> str:
    """BN-VAE (gamma 0.5) and delta-VAE (delta 0.1) beside the VAE, on the same network: their KL floors, the
    MI they keep, and the NLL they pay."""
    c = cells("lagging_omniglot")
    vae, bn, delta = c["VAE"], c["BN-VAE"], c["delta-VAE"]
    d = 32
    bn_floor, delta_floor = d * 0.5 ** 2 / 2, d * 0.1
    assert bn["kl"] >= bn_floor and delta["kl"] >= delta_floor, "each remedy's KL is above its floor"
    assert max(bn["nll"], delta["nll"]) >= vae["nll"], "neither remedy improves the NLL"
    assert max(abs(bn["nll"] - vae["nll"]), abs(delta["nll"] - vae["nll"])) < 0.3, "both within 0.3 nats of the VAE"
    return (f"BN-VAE's KL is {bn['kl']:.2f} nats, above its floor of {bn_floor:.1f} (d γ²/2 with γ = 0.5), and "
            f"δ-VAE's {delta['kl']:.2f}, above its {delta_floor:.1f} (d δ)|they keep MI {bn['mi']:.2f} and "
            f"{delta['mi']:.2f} nats where the VAE keeps {vae['mi']:.2f}|and all {bn['au']} and {delta['au']} units"
            f"|NLL {bn['nll']:.2f} and {delta['nll']:.2f} against the VAE's {vae['nll']:.2f}")


def missing_claims(text: str) -> list[str]:
    """The claims whose words, as the results make them, are not on the page, and those whose sentence the
    results no longer support (a claim asserts what its sentence says beyond its numbers)."""
    missing = []
    for fn in CLAIMS:
        try:
            fragment = fn()
        except AssertionError as e:
            missing.append(f"{fn.__name__}: {e or 'the results no longer support its sentence'}")
            continue
        missing += [part for part in fragment.split("|") if part not in text]
    return missing



def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the page is stale")
    args = parser.parse_args()
    text = PAGE.read_text()
    new = render(text)
    missing = missing_claims(new)
    for fragment in missing:
        print(f"not on the page as the results say it: {fragment!r}", file=sys.stderr)
    if args.check:
        if new != text:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), "docs/results.md", "written"))
        if new != text or missing:
            sys.exit(1)
        print("docs/results.md: every table and quoted number is as the results say")
        return
    PAGE.write_text(new)
    print(f"wrote the {len(MARKER.findall(new))} tables of {PAGE}")


if __name__ == "__main__":
    main()
