from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..evaluate import as_seen
from ..rng import seeded
from . import as_bundle, register, sampling


@dataclass
class ProbeResult:
    logistic_accuracy: float  # test accuracy of a logistic regression on the posterior means
    knn_accuracy: float       # the same with 5 nearest neighbours
    n_train: int
    n_test: int


@torch.no_grad()
def posterior_means(bundle, x, y, batch_size: int = 1000) -> np.ndarray:
    """E_q[z|x] of the model's own posterior, batch by batch."""
    device = bundle.device
    with sampling(device):
        return torch.cat([bundle.posterior(a.to(device), b.to(device)).mean.cpu()
                          for a, b in zip(x.split(batch_size), y.split(batch_size))]).numpy()


@register("probe")
def probe(model, data, n_train: int = 10000, n_test: int = 10000, seed: int = 0) -> ProbeResult:
    """Post-hoc latent probe: a logistic regression on the standardized posterior means (the model's own
    posterior), fitted on the train split and scored on the test split; also the accuracy of 5-nearest-
    neighbours. Needs a dataset with class labels. The images are the ones the model sees (binarized, with a
    fixed seed, when the data is binarized dynamically), as in every other diagnostic. (The mu-VAE paper's
    Table 1 instead trains an MLP alongside the VAE: experiments/classifier.py.)"""
    if data.info.n_classes < 2:
        raise ConfigError(f"the probe needs class labels; dataset {data.info.name!r} has none")
    bundle = as_bundle(model)
    with seeded(torch.device("cpu"), seed):
        train_x, test_x = as_seen(data, data.train_x[:n_train]), as_seen(data, data.test_x[:n_test])
    train_z = posterior_means(bundle, train_x, data.train_y[:n_train])
    test_z = posterior_means(bundle, test_x, data.test_y[:n_test])
    train_y, test_y = data.train_y[:n_train].numpy(), data.test_y[:n_test].numpy()
    # scikit-learn takes a second to import: only here, not in every command that imports the diagnostics
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_z, train_y)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(train_z, train_y)
    return ProbeResult(logistic.score(test_z, test_y), knn.score(test_z, test_y), len(train_y), len(test_y))
