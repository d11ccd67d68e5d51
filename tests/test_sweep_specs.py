"""The sweep specs of the paper reproductions (experiments/sweeps/*.toml) train what their scripts train.

Each spec is read by the real parser and made into trials as `python -m core sweep` does; its trials are
then compared with the runs the script itself builds (the script is imported, which runs nothing: its
main() is behind `if __name__ == "__main__"`). No training.
"""
import copy
import importlib.util
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from core import sweep
from core.config import RunConfig
from core.data import DataSpec
from core.objectives import build as build_objective

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
SPECS = EXPERIMENTS / "sweeps"
CONV_ONLY = ("channels", "kernel", "strides", "decoder_channels", "decoder_strides")


@lru_cache(maxsize=None)
def script(name: str):
    """experiments/NAME.py as a module (its constants and functions), without running it (the scripts import
    their `common`, on the tests' path: pyproject.toml)."""
    spec = importlib.util.spec_from_file_location(f"_reproduction_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def trials(name: str) -> tuple:
    return tuple(sweep.read_spec(SPECS / f"{name}.toml").trials)


def plain(config) -> dict:
    """A run config (RunConfig or its dict) as JSON holds it, its knobs as the objective stores them
    (every knob, defaults included, and beta)."""
    d = json.loads(json.dumps(config.to_dict() if isinstance(config, RunConfig) else config))
    d["settings"] = build_objective(d["objective"], d["settings"]).settings()
    return d


def network(config, batch_norm: bool = True) -> dict:
    """plain(config) as the network it builds: the decoder's activation resolved ("" is the encoder's),
    and the fields its arch does not read (an MLP's conv widths, a conv net's hidden widths) dropped."""
    d = copy.deepcopy(plain(config))
    model = d["model"]
    model["decoder_activation"] = model["decoder_activation"] or model["activation"]
    for key in CONV_ONLY if model["arch"] == "mlp" else ("hidden",):
        del model[key]
    if not model["latent_below"]:
        del model["hidden_above"]  # read only by a second stochastic layer
    if not batch_norm:
        del model["batch_norm"]
    return d


def multiset(configs) -> Counter:
    return Counter(json.dumps(c, sort_keys=True) for c in configs)


@pytest.mark.parametrize("name", ["improving_vaes_table1", "mu_vae_probe", "vlae_nll"])
def test_ids_and_commands_are_unique(name):
    ts = trials(name)
    assert len({t.id for t in ts}) == len(ts)
    assert len({t.command for t in ts}) == len(ts)  # no trial trains what another does
    assert all(t.steps is None for t in ts)         # the budget is in epochs, as the papers give it


# ------------------------------------------------------------ "Improving VAEs", Table 1


def table1_runs() -> list[RunConfig]:
    """Every run the script trains to the full budget, were its picks not made: each cell's variants."""
    m = script("improving_vaes_table1")
    return [config for row in m.PAPER if row != "VAE original" for z in m.LATENTS for _, config in m.runs(row, z)]


def test_table1_has_every_cell_and_variant():
    m = script("improving_vaes_table1")
    rows = [r for r in m.PAPER if r != "VAE original"]
    assert len(rows) * len(m.LATENTS) == 35  # the table's trained cells
    # one trial a cell, but for the Adagrad rows (a trial per rate the script picks from) and the DVAE
    # (a trial per noise level it picks the best of)
    expected = len(m.LATENTS) * (4 + 2 * len(m.ADAGRAD_RATES) + len(m.DVAE_NOISE))
    assert expected == 80 == len(table1_runs())
    ts = trials("improving_vaes_table1")
    assert len(ts) == expected
    by_objective = Counter(t.axes["objective"] for t in ts)
    assert by_objective == {"vae": 5 * (len(m.ADAGRAD_RATES) + 2), "beta-vae": 5 * len(m.ADAGRAD_RATES),
                            "iwae": 5, "dvae": 5 * len(m.DVAE_NOISE), "cvae": 5}
    for objective in by_objective:
        assert {t.axes["latent"] for t in ts if t.axes["objective"] == objective} == set(m.LATENTS)


def test_table1_trials_are_the_scripts_runs():
    """The same data, network, objective and knobs, optimizer, rate, betas and batch as the script's runs
    (batch norm aside: see the next test)."""
    ts = trials("improving_vaes_table1")
    assert multiset(network(t.config, batch_norm=False) for t in ts) == \
        multiset(network(c, batch_norm=False) for c in table1_runs())


def test_table1_batch_norm_is_the_cnns_alone():
    """`batch_norm = [false, true]` in the grid: false must be no flag at all (core.sweep._options), or every
    MLP row would train with batch norm."""
    ts = trials("improving_vaes_table1")
    assert multiset(network(t.config) for t in ts) == multiset(network(c) for c in table1_runs())
    assert all(t.config.to_dict()["model"]["batch_norm"] == (t.config.to_dict()["model"]["arch"] == "conv") for t in ts)


def test_table1_networks_are_the_papers():
    ts = trials("improving_vaes_table1")
    for t in ts:
        c, model = t.config.to_dict(), t.config.to_dict()["model"]
        assert c["data"]["name"] == "mnist" and c["data"]["binarize"] == "invert-nonzero"
        assert model["likelihood"] == "bernoulli" and c["batch_size"] == 100 and c["seed"] == 0
        assert model["latent_dim"] == t.axes["latent"]
        assert t.epochs == 100  # the paper's budget (the script ran 2)
        row = (c["objective"], model["arch"], model["activation"])
        if row == ("vae", "conv", "leaky-relu"):  # VAE CNN
            assert tuple(model["channels"]) == (32, 64) and model["decoder_activation"] == "relu"
            assert model["batch_norm"] and c["optimizer"] == "adam" and tuple(c["betas"]) == (0.9, 0.99)
            assert c["lr"] == (1e-3 if t.axes["latent"] == 200 else 1e-2)
        elif c["objective"] == "iwae":
            assert tuple(model["hidden"]) == (200, 200) and model["activation"] == "tanh"
            assert model["latent_below"] == 100 and tuple(model["hidden_above"]) == (100, 100)  # Burda et al.'s App. C
            assert c["settings"]["k"] == 50 and c["optimizer"] == "adam" and c["lr"] == 1e-3
            assert tuple(c["betas"]) == (0.9, 0.999)
        elif model["activation"] == "tanh":  # VAE implementation, beta-VAE: Adagrad
            assert c["objective"] in ("vae", "beta-vae") and tuple(model["hidden"]) == (500,)
            assert c["optimizer"] == "adagrad" and c["lr"] in (0.01, 0.02, 0.1)
            assert c["settings"]["beta"] == (4.0 if c["objective"] == "beta-vae" else 1.0)
        else:  # VAE tuned, DVAE, CVAE
            assert c["objective"] in ("vae", "dvae", "cvae") and model["activation"] == "relu"
            assert tuple(model["hidden"]) == (500,) and model["arch"] == "mlp"
            assert c["optimizer"] == "adam" and tuple(c["betas"]) == (0.9, 0.99)
            assert c["lr"] == (1e-2 if t.axes["latent"] == 3 else 1e-3)
    noise = {t.config.to_dict()["settings"]["noise"] for t in ts if t.axes["objective"] == "dvae"}
    assert noise == set(script("improving_vaes_table1").DVAE_NOISE)


# ------------------------------------------------------------ mu-VAE, Table 1


def mu_runs() -> list[RunConfig]:
    """The script's runs, built as its run() builds them (there inline, around the training)."""
    m = script("mu_vae_probe")
    configs = []
    for name in m.PAPER:
        for _, objective, settings in m.MODELS:
            if objective == "mu-vae":
                settings = {**settings, "variance": "bounded"}  # the script's --variance default
            configs.append(RunConfig(data=DataSpec(name), model=m.TABLE4, objective=objective, settings=settings,
                                     batch_size=64, lr=1e-4))
    return configs


def test_mu_vae_trials_are_the_scripts_runs():
    m = script("mu_vae_probe")
    ts = trials("mu_vae_probe")
    assert len(ts) == len(m.PAPER) * len(m.MODELS) == 8  # 2 datasets x 4 models
    assert multiset(plain(t.config) for t in ts) == multiset(plain(c) for c in mu_runs())  # field for field
    for t in ts:
        c, model = t.config.to_dict(), t.config.to_dict()["model"]
        assert model["arch"] == "conv" and tuple(model["channels"]) == (64, 64, 64)
        assert tuple(model["strides"]) == (1, 2, 2) and model["kernel"] == 3
        assert tuple(model["decoder_channels"]) == (64, 64, 32) and tuple(model["decoder_strides"]) == (1, 2, 2)
        assert model["activation"] == "leaky-relu" and model["leaky_slope"] == 0.2 and model["latent_dim"] == 10
        assert model["likelihood"] == "mse" and model["init"] == "he" and not model["batch_norm"]
        assert c["optimizer"] == "adam" and c["lr"] == 1e-4 and tuple(c["betas"]) == (0.9, 0.999)
        assert c["batch_size"] == 64 and c["data"]["binarize"] == "none" and t.epochs == 1
    models = Counter((t.config.to_dict()["data"]["name"], t.config.to_dict()["objective"], t.config.to_dict()["settings"].get("clip"),
                      t.config.to_dict()["settings"]["beta"]) for t in ts)
    assert models == {(d, o, clip, beta): 1 for d in ("mnist", "fashion-mnist")
                      for o, clip, beta in (("vae", None, 1.0), ("beta-vae", None, 4.0),
                                            ("mu-vae", 3.0, 1.0), ("mu-vae", 6.0, 1.0))}


# ------------------------------------------------------------ VLAE supplement, the T sweep


def test_vlae_trials_are_the_scripts_runs():
    m = script("vlae_nll")
    alpha = m.sa_vae_step()  # what the script would use now: sa_vae_step.json's pick
    runs = [RunConfig(data=DataSpec("mnist", binarize="dynamic"), model=m.NETWORK, objective=objective,
                      settings={**settings, "refine_lr": alpha} if objective == "sa-vae" else settings, lr=5e-4)
            for _, objective, settings in m.MODELS]
    ts = trials("vlae_nll")
    assert len(ts) == len(m.MODELS) == 1 + 4 * 4 + 1  # the VAE, four models at T = 1, 2, 4, 8, VLAE + CG
    assert multiset(plain(t.config) for t in ts) == multiset(plain(c) for c in runs)  # field for field
    for t in ts:
        c, model = t.config.to_dict(), t.config.to_dict()["model"]
        assert tuple(model["hidden"]) == (500, 500) and model["activation"] == "relu"
        assert model["latent_dim"] == 20 and model["init"] == "vlae-code" and model["arch"] == "mlp"
        assert c["data"]["name"] == "mnist" and c["data"]["binarize"] == "dynamic"
        assert c["optimizer"] == "adam" and c["lr"] == 5e-4 and c["batch_size"] == 128
        assert t.epochs == 2000  # the supplement's "up to 2000 epochs" (the script ran 1,000 steps)
    T = {o: sorted(t.config.to_dict()["settings"][k] for t in ts if t.axes["objective"] == o)
         for o, k in (("vlae", "mode_steps"), ("sa-vae", "refine_steps"), ("householder", "flow_steps"),
                      ("iaf", "flow_steps"))}
    assert T == {"vlae": [1, 2, 4, 4, 8], "sa-vae": [1, 2, 4, 8], "householder": [1, 2, 4, 8], "iaf": [1, 2, 4, 8]}
    cg = [t for t in ts if t.config.to_dict()["settings"].get("update") == "polak-ribiere"]
    assert [t.config.to_dict()["settings"]["mode_steps"] for t in cg] == [4]
