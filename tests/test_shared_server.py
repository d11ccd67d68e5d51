"""One server for a whole class: every hostile case of bench/hostile.py ends in one line, in seconds, in
bounded memory; a session reads and writes only its own files and the roots the operator allows; the
pages never show Streamlit's exception box."""
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import APP, ROOT, session_runs, train
from core import files, limits, safefs
from core.errors import ConfigError, DataError

import hostile

SHIPPED = ROOT / "checkpoints"


# The cases that take seconds on purpose (a gigabyte-sized .npz, 20,000 PNGs) are in the slow set.
HEAVY = {"an .npz of 2 structured values of 1 GiB each", "a 3 MB zip of 20,000 1x1 PNGs at image size 128"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name
                                  for name in hostile.CASES])
def test_every_hostile_case_ends_in_one_line_in_seconds_and_bounded_memory(name, tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))  # a case's uploads stay in its folder
    says, _ = hostile.CASES[name]
    out = hostile.run(name, tmp_path)
    assert not out.traceback, out.line
    assert says in out.line and "\n" not in out.line, out.line
    assert out.line.startswith("ok") if says == "ok" else "error: " in out.line
    assert out.seconds < 20, out.seconds
    assert not out.peak_mb >= 400, out.peak_mb  # the bomb alone would be 6.9 GB; 20,000 images at 128, 3.9 GB


def test_a_fifo_swapped_in_after_a_check_still_cannot_block(tmp_path):
    """open_regular opens without blocking and checks the open descriptor, so there is no window between
    a check and the open in which a FIFO could be put in place."""
    import os
    os.mkfifo(tmp_path / "pipe")
    start = time.monotonic()
    with pytest.raises(DataError, match="not a regular file"):
        safefs.read_regular(tmp_path / "pipe", 100)
    assert time.monotonic() - start < 1
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="101 bytes is more than the 100 bytes"):
        safefs.read_regular(tmp_path / "big", 100)


def test_within_resolves_links_and_keeps_to_its_roots(tmp_path):
    root = tmp_path / "class"
    (root / "cats").mkdir(parents=True)
    (root / "inside").symlink_to(root / "cats")
    (root / "outside").symlink_to(tmp_path)
    real = root.resolve()
    assert safefs.within("cats", [real]) == real / "cats"  # relative to a root
    assert safefs.within(str(root / "inside"), [real]) == real / "cats"  # a link that stays inside
    assert safefs.within(str(root / "outside"), [real]) is None  # a link that leaves
    assert safefs.within("/proc/self", [Path("/")]) is None  # never the system's, whatever the roots
    assert safefs.within("missing", [real]) is None and safefs.within("", [real]) is None
    assert safefs.within("cats", []) is None  # no roots: nothing


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image
    from core import data
    values = np.array([[0, 256, 32768, 65535]], np.uint16).repeat(4, 0)
    for i in range(2):
        Image.fromarray(values).save(tmp_path / f"{i}.png")
    x = data.load(data.DataSpec(str(tmp_path))).train_x[0, 0, 0]
    assert np.allclose(x.numpy(), values[0] / 65535, atol=1e-6)  # clipping to 8 bits gave 0, 1, 1, 1


def test_npz_headers_are_read_without_decompressing(tmp_path):
    np.savez_compressed(tmp_path / "a.npz", x=np.zeros((2000, 64, 64), np.uint8), y=np.arange(2000))
    headers = files.npz_headers(tmp_path / "a.npz", "a.npz")
    assert headers["x"][0] == (2000, 64, 64) and headers["x"][1] == np.uint8 and headers["y"][0] == (2000,)


def test_the_memory_estimate_refuses_what_would_not_fit_and_passes_the_shipped_recipes(monkeypatch):
    from core.config import RunConfig
    from core.data import DataInfo, DataSpec
    from core.engine import check_run
    from core.models import ModelConfig
    mnist = DataInfo("mnist", (1, 28, 28), 10, "bernoulli")
    check_run(RunConfig(objective="iwae", settings={"k": 50}, batch_size=20), mnist)  # the IWAE paper's
    check_run(RunConfig(model=ModelConfig(arch="conv"), data=DataSpec("cifar10"), batch_size=128),
              DataInfo("cifar10", (3, 32, 32), 10, "gaussian"))
    with pytest.raises(ConfigError, match="GiB a run may take here"):
        check_run(RunConfig(objective="iwae", settings={"k": 5000}), mnist)
    monkeypatch.setenv("VAELAB_MAX_MEMORY_MB", "100000")  # the operator may allow more
    check_run(RunConfig(objective="iwae", settings={"k": 5000}), mnist)
    with pytest.raises(ConfigError, match="number of weights must be a whole number up to"):
        check_run(RunConfig(model=ModelConfig(hidden=(16384,) * 2)), DataInfo("x", (3, 256, 256), 0, "gaussian"))


def test_every_objective_knob_that_is_a_size_has_a_maximum():
    """A count an objective loops over or allocates by (samples, flow steps, inner updates) is bounded."""
    from core.objectives import OBJECTIVES
    sizes = {"k", "samples", "flow_steps", "flow_hidden", "refine_steps", "mode_steps", "cycles", "anneal_steps"}
    for name, cls in OBJECTIVES.items():
        for knob_name, knob in cls.knobs.items():
            if knob_name in sizes:
                assert knob.upper is not None, (name, knob_name)
                with pytest.raises(ConfigError, match="must be at most"):
                    knob.check(knob_name, knob.upper + 1)


def test_the_limits_table_names_each_limit_once():
    assert all(limit.maximum > 0 and limit.what for limit in limits.LIMITS.values())
    with pytest.raises(ConfigError, match="latent size must be a whole number up to 4,096"):
        limits.check("latent", 4097, "latent size")
    assert limits.clamp(float("nan"), -3, 3) == -3 and limits.clamp(1e308, -3, 3) == 3


# ---------------------------------------------------------------- the dashboard, two sessions at a time

def copy_shipped(folder: Path, name: str, as_name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for ext in (".json", ".safetensors"):
        shutil.copy(SHIPPED / f"{name}{ext}", folder / f"{as_name or name}{ext}")
    return folder / f"{as_name or name}.json"


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The environment of a class's server: an allowed root that holds the data cache too (the worst case:
    the operator shares a folder that also holds everybody's uploads)."""
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("VAELAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "share" / "cache"))
    monkeypatch.setenv("VAELAB_DATA_ROOTS", str(tmp_path / "share"))
    (tmp_path / "share").mkdir()
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def session():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    return at


def own_path(at, text):
    at.sidebar.selectbox(key="dataset").set_value("your own images ...").run()
    at.sidebar.text_input(key="own-path").set_value(text).run()
    assert not at.exception
    return [e.value for e in at.sidebar.error]


def test_a_session_cannot_read_another_sessions_uploads_nor_list_its_saved_runs(server):
    alice, bob = session(), session()
    buf = __import__("io").BytesIO()
    np.savez(buf, x=(np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8))
    theirs = files.unpack_upload("secret.npz", buf.getvalue(), alice.session_state["owner"])  # as Alice's page does
    (server / "share" / "mine").mkdir()
    np.savez(server / "share" / "mine" / "ok.npz", x=np.zeros((20, 8, 8), np.uint8))
    refused = "not found, or not in a folder this server lets you read"
    for typed in (str(theirs), str(theirs.parent), str(files.uploads_dir()), "cache/uploads", "/etc", "/proc/self",
                  "/", "../..", "nowhere"):
        assert own_path(bob, typed) == [f"{typed}: {refused}"], typed  # not there and not allowed read the same
    assert own_path(bob, "mine/ok.npz") == [] and "20 images of 1x28x28" in bob.sidebar.caption[-1].value
    # Alice's saved run: in her own folder, listed for her and nobody else.
    copy_shipped(server / "checkpoints" / "runs" / alice.session_state["owner"], "mnist-vae", "alices-run")
    copy_shipped(server / "checkpoints", "mnist-vae")
    alice.switch_page("views/gallery.py").run()
    bob.switch_page("views/gallery.py").run()
    assert not alice.exception and not bob.exception
    assert any("alices-run" in m.value for m in alice.markdown)  # in her "Saved from the Train page" group
    assert any("Saved from the Train page" in h.value for h in [*alice.subheader, *alice.markdown])
    assert not any("alices-run" in m.value for m in bob.markdown) and any("mnist-vae" in m.value for m in bob.markdown)


def test_without_allowed_roots_the_server_path_field_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    monkeypatch.delenv("VAELAB_DATA_ROOTS", raising=False)
    at = session()
    at.sidebar.selectbox(key="dataset").set_value("your own images ...").run()
    assert not at.exception and not [w for w in at.sidebar.text_input if w.key == "own-path"]


def test_a_checkpoint_naming_a_system_path_as_its_dataset_opens_at_once(server):
    path = copy_shipped(server / "checkpoints", "mnist-vae", "hostile")
    meta = json.loads(path.read_text())
    meta["config"]["data"]["name"] = "/proc/self/root"
    path.write_text(json.dumps(meta))
    at = session()
    start = time.monotonic()
    at.switch_page("views/gallery.py").run()
    assert not at.exception and time.monotonic() - start < 30
    assert any("is not here" in c.value for c in at.caption)  # its prior samples still show


@pytest.mark.slow
def test_a_device_that_is_not_there_is_a_message_and_the_next_run_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("VAELAB_RUNS", str(tmp_path / "runs"))
    at = session()
    at.sidebar.selectbox(key="device").set_value("cuda").run()
    at.sidebar.number_input(key="steps").set_value(50)
    at.sidebar.button[0].click().run()
    assert not at.exception and "no CUDA GPU is available" in at.error[0].value
    assert not session_runs(at)  # nothing started, nothing broken left behind
    at.switch_page("views/explore.py").run()  # the other pages still open
    assert not at.exception
    at.switch_page("views/train.py").run()
    at.sidebar.selectbox(key="device").set_value("cpu").run()
    assert train(at, 50)["vae"].step_count == 50


def test_sizes_typed_into_the_page_are_bounded_by_the_table_of_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    at = session()
    at.sidebar.multiselect(key="objectives").set_value(["iwae", "iaf"]).run()
    assert at.sidebar.number_input(key="knob-iwae-k").max == limits.maximum("k")
    assert at.sidebar.number_input(key="knob-iaf-flow_steps").max == limits.maximum("flow_steps")


def test_a_link_with_huge_slider_values_opens_them_within_range(tmp_path, monkeypatch):
    copy_shipped(tmp_path, "mnist-vae")
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["z"] = ",".join(["1e308", "-inf", "nan"] + ["5"] * 13)
    at.switch_page("views/explore.py").run()
    assert not at.exception
    z = [float(v) for v in at.query_params["z"][0].split(",")] if isinstance(at.query_params["z"], list) else \
        [float(v) for v in at.query_params["z"].split(",")]
    assert len(z) == 16 and all(abs(v) < 50 for v in z), z


def test_a_password_keeps_out_who_does_not_have_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("VAELAB_PASSWORD", "class of 2026")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "owner" not in at.session_state  # no session, no runs, no token
    assert [w.label for w in at.text_input] == ["Password"] and not at.sidebar.selectbox
    at.text_input(key="password").set_value("guess").run()
    assert "not this server's password" in at.error[0].value and "owner" not in at.session_state
    at.text_input(key="password").set_value("class of 2026").run()
    assert not at.exception and "owner" in at.session_state and at.sidebar.selectbox(key="dataset")


def test_the_readme_gives_the_table_of_limits_as_the_code_has_it(monkeypatch):
    monkeypatch.delenv("VAELAB_MAX_MEMORY_MB", raising=False)
    assert limits.table() in (ROOT / "README.md").read_text()


def test_compare_takes_at_most_its_limit_of_models_even_from_a_link(tmp_path, monkeypatch):
    trials = sorted((SHIPPED / "sweeps" / "digits-collapse" / "trials").glob("beta-vae-*.json"))[:10]
    for path in trials:
        for ext in (".json", ".safetensors"):
            shutil.copy(path.with_suffix(ext), tmp_path / f"{path.stem}{ext}")
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["compare"] = [f"file: {p.stem}" for p in trials]
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    assert len(trials) == 10 and len(at.multiselect(key="compare").value) == limits.maximum("compare")


def test_a_walk_of_a_folder_that_is_not_there_finds_nothing(tmp_path):
    assert safefs.walk(tmp_path / "missing", safefs.Budget()) == []
    assert safefs.walk(tmp_path, safefs.Budget()) == []


def test_linked_class_folders_are_followed_where_links_may_lead(tmp_path):
    """ImageFolder with class folders that are links (train/cats -> ../pool/cats) reads as before; on the
    dashboard a link that leads out of the allowed roots is not followed."""
    from test_user_data import shapes
    pool = shapes(tmp_path / "pool", n=4)
    (tmp_path / "train").mkdir()
    for name in ("circle", "square"):
        (tmp_path / "train" / name).symlink_to(pool / name)
    found, classes = files.image_files(tmp_path / "train")
    assert classes == ["circle", "square"] and len(found) == 8
    only_train = safefs.Budget(inside=lambda p: p.is_relative_to((tmp_path / "train").resolve()))
    with pytest.raises(DataError, match="no images found"):
        files.image_files(tmp_path / "train", only_train)
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "again").symlink_to(tmp_path / "loop")  # a cycle is entered once
    assert safefs.walk(tmp_path / "loop", safefs.Budget()) == []


@pytest.mark.parametrize("params", [{"step": "²"}, {"step": "9" * 40}, {"model": "sweep: digits-collapse/" + "x" * 300},
                                    {"model": "sweep: digits-collapse/../../../etc/passwd"}])
def test_hostile_url_values_open_a_working_page(params, tmp_path, monkeypatch):
    copy_shipped(tmp_path, "mnist-vae")
    monkeypatch.setenv("VAELAB_CHECKPOINTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page("views/explore.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="source").value == "file: mnist-vae"  # the first model, not the link's
