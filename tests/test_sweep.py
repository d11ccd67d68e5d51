"""Sweeps: a spec becomes the trials it says; both backends (local processes, a real local Ray instance)
give the same numbers for the same seeds; an interrupted sweep resumes to the uninterrupted table; bad
specs get one clear line before anything trains."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT
from core import checkpoint, cli, sweep

SPEC = """
name = "tiny"
[train]
dataset = "digits"
binarize = "dynamic"
hidden = [32]
steps = {steps}
live_every = 0
[grid]
objective = ["beta-vae", "free-bits"]
beta = [1, 4]
latent = [3]
seed = [0]
"""


def spec_file(tmp_path, text=SPEC, steps=40, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text.format(steps=steps))
    return path


def trials_of(text):
    return sweep.parse_spec(text, "s").trials


def test_the_grid_expands_knobs_only_for_their_objectives_and_drops_excluded_trials():
    trials = trials_of("""
[train]
dataset = "digits"
steps = 5
[grid]
objective = ["beta-vae", "free-bits", "mmd-vae"]
beta = [1, 4]
latent = [2, 8]
free_bits = [0.25, 1.0]
[[exclude]]
objective = "mmd-vae"
latent = 8
""")
    ids = [t.id for t in trials]
    # beta-vae: 2 x 2; free-bits: 2 x 2 x 2 (its knob); mmd-vae: 2 x 1 (latent 8 excluded)
    assert len(ids) == 4 + 8 + 2 == len(set(ids))
    fb = [t for t in trials if t.axes["objective"] == "free-bits"]
    assert {t.axes["free_bits"] for t in fb} == {0.25, 1.0}
    assert all("free_bits" not in t.axes for t in trials if t.axes["objective"] != "free-bits")
    one = next(t for t in fb if t.axes == {"objective": "free-bits", "beta": 4, "latent": 2, "free_bits": 0.25})
    assert one.config.settings == {"beta": 4.0, "free_bits": 0.25}
    assert one.config.model.latent_dim == 2 and one.steps == 5
    assert one.command.startswith("vaelab train --dataset digits") and "--objective free-bits" in one.command


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("grid, says", [
    ('objective = ["vae", "no-such"]', "unknown objective 'no-such'"),
    ('objective = ["vae"]\nwarp = [1]', "'warp', which is neither a train option nor any objective's knob"),
    ('objective = ["vae"]\nfree_bits = [1]', "'free_bits' is a knob of free-bits, none of which"),
    ('objective = ["free-bits"]\nfree_bits = [-1]', "free_bits must be at least 0"),
    ('objective = ["vae"]\nlatent = [0]', "--latent must be a whole number >= 1"),
    ('', "the spec's [grid] is empty"),
    ('objective = []', "[grid] objective has no values"),
])
def test_a_bad_spec_is_one_line_before_anything_trains(tmp_path, capsys, grid, says):
    """The CLI's own main() in this process (the same code as `python -m core`, whose real processes the
    tests below run): exit status 1, one line on stderr, nothing written."""
    from core import cli
    spec = spec_file(tmp_path, f'[train]\ndataset = "digits"\nsteps = 5\n[grid]\n{grid}\n')
    status = cli.main(["sweep", str(spec), "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert status == 1
    assert stderr.count("\n") == 1 and says in stderr, stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_unreachable_ray_address_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("sweep", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"no Ray cluster answers at '127.0.0.1:{port}'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The sweep with the local backend, uninterrupted (its --out folder): the reference every other run
    must equal."""
    tmp = tmp_path_factory.mktemp("local")
    result = run_cli("sweep", str(spec_file(tmp)), "--out", str(tmp / "out"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "pilot" in result.stderr and "estimate:" in result.stderr
    return tmp / "out"


@pytest.fixture(scope="module")
def local_table(local_sweep):
    return sweep.read_rows(local_sweep / "tiny")


@pytest.mark.slow
def test_the_local_backend_trains_records_and_tables_every_trial(local_table):
    assert [r["status"] for r in local_table] == ["done"] * 4
    assert {r["trial"] for r in local_table} == {f"{o}-beta{b}-latent3-seed0" for o in ("beta-vae", "free-bits")
                                                 for b in (1, 4)}
    for row in local_table:
        assert row["step"] == "40" and float(row["IWAE NLL"]) <= -float(row["ELBO"]) + 1e-6
        assert 0 <= int(row["AU"]) <= 3 and row["verdict"]


@pytest.fixture
def ray_head():
    """A real local Ray instance, started as a cluster is (`ray start --head`), limited to 2 CPUs."""
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--port", str(port),
                    "--include-dashboard", "false", "--temp-dir", temp, "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_the_ray_backend_gives_the_local_backends_numbers(tmp_path, ray_head, local_table):
    result = run_cli("sweep", str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--ray", ray_head,
                     "--no-pilot")
    assert result.returncode == 0, result.stderr
    rows = sweep.read_rows(tmp_path / "out" / "tiny")
    assert [r["status"] for r in rows] == ["done"] * 4
    # the same rows, every figure alike, the timing columns aside
    assert [{k: v for k, v in r.items() if k not in sweep.TIMING} for r in rows] == \
        [{k: v for k, v in r.items() if k not in sweep.TIMING} for r in local_table]
    meta = checkpoint.read_sidecar(checkpoint.paths(tmp_path / "out" / "tiny" / "trials" / rows[0]["trial"])[1])
    trial = next(t for t in trials_of(SPEC.format(steps=40)) if t.id == rows[0]["trial"])
    assert meta["command"] == trial.command and meta["sweep"]["digest"] == trial.digest


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_to_the_uninterrupted_table(tmp_path, local_table):
    spec, out = spec_file(tmp_path), tmp_path / "out"
    folder = out / "tiny"
    # One trial at a time, slowed to one step per few ms, so SIGINT lands after the first and inside another.
    slow = SPEC.replace("steps = {steps}", "steps = {steps}\nbatch_size = 1024")
    reference = run_cli("sweep", str(spec_file(tmp_path, slow, steps=200, name="ref.toml")), "--out",
                        str(tmp_path / "ref"), "--no-pilot")
    assert reference.returncode == 0, reference.stderr
    spec = spec_file(tmp_path, slow, steps=200)
    proc = subprocess.Popen([sys.executable, "-m", "core", "sweep", str(spec), "--out", str(out), "--workers", "1",
                             "--no-pilot"], cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    # The first trial's row: the driver has recorded it, and its one worker took the next trial from the
    # pool's queue as it returned the first.
    while time.time() < deadline and sum(r["status"] == "done" for r in sweep.read_rows(folder)) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the driver and its worker
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    trials = trials_of(slow.format(steps=200))
    states = {t.id: sweep.status(folder, t)[0] for t in trials}
    assert 1 <= list(states.values()).count("done") < 4, states
    finished = {t.id: checkpoint.paths(sweep.trial_path(folder, t))[0].stat().st_mtime_ns
                for t in trials if states[t.id] == "done"}

    again = run_cli("sweep", str(spec), "--out", str(out), "--no-pilot")
    assert again.returncode == 0, again.stderr
    assert f"{len(finished)} done" in again.stderr
    for trial_id, mtime in finished.items():  # not trained again
        assert checkpoint.paths(folder / "trials" / trial_id)[0].stat().st_mtime_ns == mtime
    resumed, uninterrupted = ([{k: v for k, v in r.items() if k not in sweep.TIMING} for r in sweep.read_rows(f)]
                              for f in (folder, tmp_path / "ref" / "tiny"))
    assert resumed == uninterrupted  # the same rows, every figure alike, the timing columns aside


@pytest.mark.slow
def test_a_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    spec = spec_file(tmp_path, '[train]\ndataset = "digits"\nhidden = [16]\nsteps = 30\nlive_every = 0\n'
                               '[grid]\nlr = [1e-3, 1e12]\n')
    result = run_cli("sweep", str(spec), "--out", str(tmp_path / "out"), "--no-pilot")
    assert result.returncode == 1
    rows = {r["trial"]: r for r in sweep.read_rows(tmp_path / "out" / "tiny")}
    assert rows["vae-lr0.001"]["status"] == "done"
    assert rows["vae-lr1000000000000.0"]["status"] == "failed"
    assert "training diverged" in rows["vae-lr1000000000000.0"]["message"]
    capsys.readouterr()
    cli.main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-pilot"])  # not retried by default
    again = capsys.readouterr().err
    assert "1 done, 1 failed" in again and "0 to run" in again


@pytest.mark.slow
def test_a_spec_that_changed_its_fixed_settings_is_refused_by_name(tmp_path, local_sweep):
    out = tmp_path / "out"
    shutil.copytree(local_sweep, out)  # trained with steps = 40
    result = run_cli("sweep", str(spec_file(tmp_path, steps=30)), "--out", str(out), "--no-pilot")
    assert result.returncode == 1 and "was trained as another run" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_false_flag_in_the_grid_is_no_flag_at_all():
    """`batch_norm = [false, true]` once gave --batch-norm to both trials."""
    trials = trials_of('[train]\ndataset = "digits"\nsteps = 5\n[grid]\nbatch_norm = [false, true]\n')
    assert [t.config.to_dict()["model"]["batch_norm"] for t in trials] == [False, True]
    assert "--batch-norm" not in trials[0].command and "--batch-norm" in trials[1].command


def test_a_trial_is_its_config_however_the_spec_writes_it():
    """A trial is identified by a digest of its config and length: a spec that writes the same run another
    way (1e-3 for 0.001, [32] for 32, the default written out) finds the same trials, and a changed
    setting does not."""
    one = trials_of('[train]\ndataset = "digits"\nsteps = 5\nhidden = 32\nlr = 0.001\n[grid]\nlatent = [2, 3]\n')
    same = trials_of('[train]\ndataset = "digits"\nhidden = [32]\nlr = 1e-3\nsteps = 5\nseed = 0\n'
                     '[grid]\nlatent = [2, 3]\n')
    other = trials_of('[train]\ndataset = "digits"\nsteps = 5\nhidden = 32\nlr = 0.002\n[grid]\nlatent = [2, 3]\n')
    assert [t.digest for t in one] == [t.digest for t in same]
    assert not {t.digest for t in one} & {t.digest for t in other}
    assert one[0].config == sweep.Trial.from_dict(one[0].to_dict()).config  # as Ray hands it to a worker
