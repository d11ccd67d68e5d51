"""Checks that need a GPU; they skip themselves on machines without one."""
import pytest
import torch

from conftest import needs_shared, small_config
from core import checkpoint
from core.data import DataSpec
from core.config import RunConfig
from core.engine import Trainer
from core.models import ModelConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def test_auto_picks_the_gpu_and_data_lives_there(digits):
    t = Trainer(small_config(device="auto"), digits)
    assert t.device.type == "cuda" and t.train_x.is_cuda
    rows = t.step(50)
    assert all(map(lambda r: r["loss"] == r["loss"], rows))


def test_gpu_runs_are_reproducible_and_checkpoints_load_on_cpu(digits, tmp_path):
    a, b = (Trainer(small_config(device="cuda", seed=5), digits) for _ in range(2))
    assert [r["loss"] for r in a.step(30)] == pytest.approx([r["loss"] for r in b.step(30)], rel=1e-5)
    a.save(tmp_path / "g")
    ck = checkpoint.load(tmp_path / "g", device="cpu")
    saved = a.model.state_dict()
    assert all(torch.equal(saved[k].cpu(), v) for k, v in ck.network.state_dict().items())


@needs_shared
def test_conv_vae_trains_on_mnist_on_gpu():
    t = Trainer(RunConfig(data=DataSpec("mnist", binarize="dynamic"), model=ModelConfig(arch="conv"), device="cuda"))
    t.step(200)
    assert t.history[-1]["loss"] < t.history[0]["loss"] * 0.7


def test_training_steps_never_wait_for_the_gpu(digits):
    """The logged numbers come back every SYNC_EVERY steps in one copy: between two gathers no step
    makes the host wait for the device (PyTorch raises on any synchronizing call in "error" mode)."""
    from core.config import SYNC_EVERY
    t = Trainer(small_config(device="cuda"), digits, live_every=0)
    assert t.sync_every == SYNC_EVERY > 1 and t._found_inf is not None
    t.step(3)  # the first steps allocate and warm up
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(SYNC_EVERY - 1):
            t._step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(t.step(1)) == SYNC_EVERY and t.step_count == SYNC_EVERY + 3


def test_a_bad_gpu_step_is_skipped_on_the_device(digits):
    t = Trainer(small_config(device="cuda"), digits)
    t.step(3)
    good = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train_x = torch.full_like(t.train_x, float("nan"))
    with pytest.raises(Exception, match="diverged at step 4"):
        t.step(10)
    assert t.step_count == 3 and all(torch.equal(good[k], v) for k, v in t.model.state_dict().items())
