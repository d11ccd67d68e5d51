import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# Tests run on the real datasets in ../shared/data unless told otherwise; never write there.
os.environ.setdefault("VAELAB_DATA", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("VAELAB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

HAVE_SHARED = (Path(os.environ["VAELAB_DATA"]) / "MNIST" / "raw").exists()
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason="needs the datasets in ../shared/data (VAELAB_DATA)")


@pytest.fixture(scope="session")
def digits():
    from core import data
    return data.load("digits")


@pytest.fixture(scope="session")
def mnist():
    from core import data
    return data.load(data.DataSpec("mnist", binarize="dynamic"))


def small_config(**kw):
    from core.data import DataSpec
    from core.engine import RunConfig
    from core.models import ModelConfig
    model = kw.pop("model", ModelConfig(hidden=(64,), latent_dim=4))
    return RunConfig(data=kw.pop("data", DataSpec("digits")), model=model, device="cpu", **kw)
