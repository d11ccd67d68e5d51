"""The CLI as a user runs it: a real subprocess, real data, real checkpoint files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from core.cli import main
from core.diagnostics import DIAGNOSTICS

DIGITS_TEST = range(297)  # scikit-learn's digits: 1,500 train / 297 test


def cli(*args, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["train", "--latent", "0"], "--latent: must be a whole number >= 1, not 0"),
    (["train", "--beta", "-1"], "beta must be at least 0"),
    (["train", "--dataset", "imagenet"], "--dataset: unknown dataset 'imagenet'"),
    (["train", "--lr", "nan"], "--lr: must be a finite number > 0, not nan"),
    (["train", "--lr", "-0.1"], "--lr: must be a finite number > 0"),
    (["train", "--batch-size", "many"], "--batch-size: expected a whole number"),
    (["train", "--objective", "free-bits", "--free-bits", "-2"], "free_bits must be at least 0"),
    (["train", "--dataset", "digits", "--epochs", "1", "--steps", "5"], "not both"),
    (["train", "--dataset", "digits", "--arch", "conv", "--channels", "8,8,8,8,8"], "shrink"),
    (["train", "--dataset", "digits", "--binarize", "dynamic", "--normalize", "mean"], "exclude each other"),
    (["train", "--dataset", "digits", "--adam-beta2", "1.5"], "betas must be two numbers in [0, 1)"),
    (["train", "--dataset", "digits", "--arch", "conv", "--strides", "1,2"], "one stride per conv layer"),
    (["train", "--dataset", "digits", "--leaky-slope", "2"], "leaky slope must be in [0, 1)"),
    (["evaluate", "/nonexistent/run"], "no such checkpoint"),
    (["diagnose", "/nonexistent/run"], "no such checkpoint"),
    (["diagnose", "x", "--only", "kl,nope"], "unknown diagnostic nope"),
    (["diagnose", "x", "--k", "0"], "--k: must be at least 1"),
])
def test_bad_arguments_give_one_clear_line(args, message, capsys):
    # In-process for speed: main() is what `python -m core` runs; any exception would escape here.
    try:
        code = main(args)
    except SystemExit as e:  # argparse exits on its own
        code = e.code
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]


def test_paper_options_reach_the_run_config():
    from core.cli import make_parser, run_config
    args = make_parser().parse_args([
        "train", "--binarize", "invert-nonzero", "--arch", "conv", "--channels", "64,64,64", "--strides", "1,2,2",
        "--conv-kernel", "3", "--decoder-channels", "64,64,32", "--decoder-strides", "1,2,2", "--activation", "leaky-relu",
        "--leaky-slope", "0.2", "--decoder-activation", "relu", "--batch-norm", "--likelihood", "mse",
        "--optimizer", "adagrad", "--adam-beta2", "0.99"])
    c = run_config(args)
    assert c.data.binarize == "invert-nonzero" and c.optimizer == "adagrad" and c.betas == (0.9, 0.99)
    m = c.model
    assert (m.strides, m.kernel, m.decoder_channels, m.decoder_strides) == ((1, 2, 2), 3, (64, 64, 32), (1, 2, 2))
    assert (m.activation, m.leaky_slope, m.decoder_activation, m.batch_norm, m.likelihood) == (
        "leaky-relu", 0.2, "relu", True, "mse")


@pytest.mark.slow
def test_bad_argument_in_a_real_process_has_no_traceback():
    r = cli("train", "--latent", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def inline(capsys, *args):
    """The CLI's main() in this process: the same code as `python -m core`, without a new interpreter's
    start-up (two seconds each). Returns what a subprocess would: returncode, stdout, stderr."""
    from types import SimpleNamespace
    from core.cli import main
    capsys.readouterr()
    status = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=status, stdout=out.out, stderr=out.err)


@pytest.mark.slow
def test_train_then_evaluate_a_real_checkpoint(tmp_path, capsys):
    """Training and the first evaluation and diagnosis run as real processes; the other commands on the
    same checkpoint call the CLI's main() here."""
    r = cli("train", "--dataset", "digits", "--hidden", "64", "--latent", "4", "--steps", "60", "--seed", "1",
            "--objective", "beta-vae", "--beta", "2", "--out", str(tmp_path), "--name", "d")
    assert r.returncode == 0, r.stderr
    assert "test ELBO" in r.stdout and (tmp_path / "d.safetensors").exists()
    assert "samples_s" in r.stderr and "AU=" in r.stderr  # the bar shows throughput and live diagnostics
    assert r.stderr.count("%|") <= 3, r.stderr  # written to a pipe, the bar draws its start and end, not every chunk
    ev = cli("evaluate", str(tmp_path / "d.json"), "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["step"] == 60 and len(result["kl_per_dim"]) == 4
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]))
    assert f"{result['elbo']:.2f}" in r.stdout  # train and evaluate agree on the same test set
    text = inline(capsys, "evaluate", str(tmp_path / "d"))
    assert "KL per dimension" in text.stdout and "z3" in text.stdout

    sidecar = json.loads((tmp_path / "d.json").read_text())
    assert [row["step"] for row in sidecar["live"]] == [50]  # live diagnostics every 50 steps

    diag = cli("diagnose", str(tmp_path / "d"), "--json", "--k", "20")
    assert diag.returncode == 0, diag.stderr
    found = json.loads(diag.stdout)["diagnostics"]
    assert set(found) == set(DIAGNOSTICS.names())
    assert "discrete latents" in found["code-usage"]["skipped"]  # a Gaussian model: said, not failed
    assert found["iwae"]["k"] == 20 and found["iwae"]["iwae"] >= found["iwae"]["elbo"]
    assert found["kl"]["total"] == pytest.approx(result["kl"], rel=0.05)  # 1,000 of the same test images
    assert len(found["collapse"]["verdicts"]) == 4 and found["probe"]["n_test"] == len(DIGITS_TEST)
    text = inline(capsys, "diagnose", str(tmp_path / "d"), "--only", "collapse,active-units")
    assert text.returncode == 0 and "verdict" in text.stdout and "z3" in text.stdout
    assert text.stdout.index("active-units") < text.stdout.index("collapse")

    assert sidecar["command"].startswith("vaelab train --dataset digits")
    recorded = inline(capsys, "diagnose", str(tmp_path / "d"), "--record")
    assert recorded.returncode == 0, recorded.stderr
    sidecar = json.loads((tmp_path / "d.json").read_text())
    assert set(sidecar["diagnostics"]["results"]) == set(DIAGNOSTICS.names())
    assert sidecar["diagnostics"]["data"]["dataset"] == "digits"
    assert sidecar["evaluation"]["results"]["elbo"] == pytest.approx(result["elbo"])  # all 297 < 1,000 images
    assert inline(capsys, "evaluate", str(tmp_path / "d")).returncode == 0  # the weights and checksum are untouched
    refused = inline(capsys, "diagnose", str(tmp_path / "d"), "--record", "--k", "5")
    assert refused.returncode == 1 and "--record" in refused.stderr

    (tmp_path / "d.safetensors").write_bytes(b"\x00" * 10)
    bad = inline(capsys, "evaluate", str(tmp_path / "d"))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "d.safetensors" in bad.stderr and "checksum" in bad.stderr


def test_diagnose_says_an_estimate_is_an_estimate(capsys):
    from core.cli import print_fields
    print_fields({"total": 3.5, "exact": False}, "  ")
    print_fields({"total": 3.5, "exact": True}, "  ")
    lines = capsys.readouterr().out.splitlines()
    assert "Monte Carlo estimate" in lines[1] and "closed form" in lines[3]


def test_the_installed_command_works_from_any_folder(tmp_path):
    """The package is installed (pyproject.toml): `vaelab` runs from anywhere, not only from the project's root."""
    vaelab = Path(sys.executable).parent / "vaelab"
    done = subprocess.run([str(vaelab), "limits"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("| limit | maximum |") and "| latent | 4,096 |" in done.stdout
    bad = subprocess.run([str(vaelab), "train", "--latent", "0"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == ("vaelab train: error: argument --latent: must be a whole "
                                                          "number >= 1, not 0")


@pytest.mark.slow
def test_vaelab_alone_or_with_streamlit_options_serves_the_dashboard(tmp_path):
    """`vaelab` starts the dashboard (Streamlit runs this installation's dashboard/app.py), from any folder;
    options it does not know go to Streamlit."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "vaelab"), "--server.headless=true",
                               f"--server.port={port}", "--server.address=127.0.0.1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, health = time.time() + 90, None
        while health is None and time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read()
            except OSError:
                time.sleep(0.3)
        assert health == b"ok", server.poll()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_training_never_replaces_a_checkpoint_silently(tmp_path, capsys):
    """A user's digits.npz and the built-in digits both train to digits-vae-z4: the second takes a new name,
    unless --overwrite says to replace it."""
    args = ["train", "--dataset", "digits", "--hidden", "16", "--latent", "4", "--steps", "2", "--save-every", "0",
            "--live-every", "0", "--out", str(tmp_path)]
    first = inline(capsys, *args)
    sha = json.loads((tmp_path / "digits-vae-z4.json").read_text())["weights_sha256"]
    second = inline(capsys, *args, "--seed", "7")
    assert first.returncode == second.returncode == 0
    assert "saving to digits-vae-z4-2 instead" in second.stderr and (tmp_path / "digits-vae-z4-2.json").exists()
    assert json.loads((tmp_path / "digits-vae-z4.json").read_text())["weights_sha256"] == sha
    third = inline(capsys, *args, "--seed", "7", "--overwrite")
    assert third.returncode == 0 and not (tmp_path / "digits-vae-z4-3.json").exists()
    assert json.loads((tmp_path / "digits-vae-z4.json").read_text())["weights_sha256"] != sha
