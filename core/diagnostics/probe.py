from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ConfigError
from . import register


@dataclass
class ProbeResult:
    logistic_accuracy: float  # test accuracy of a logistic regression on the encoder means
    knn_accuracy: float       # the same with 5 nearest neighbours
    n_train: int
    n_test: int


@torch.no_grad()
def encoder_means(model, x, batch_size: int = 1000) -> np.ndarray:
    device = model.prior_loc.device
    return torch.cat([model.encode(b.to(device)).mean.cpu() for b in x.split(batch_size)]).numpy()


@register("probe")
def probe(model, data, n_train: int = 10000, n_test: int = 10000) -> ProbeResult:
    """Latent probe, as in the mu-VAE seed (Ucar 2019, Table 1): a logistic regression on the
    standardized encoder means, fitted on the train split and scored on the test split; also the
    accuracy of 5-nearest-neighbours. Needs a dataset with class labels."""
    if data.info.n_classes < 2:
        raise ConfigError(f"the probe needs class labels; dataset {data.info.name!r} has none")
    train_z, test_z = encoder_means(model, data.train_x[:n_train]), encoder_means(model, data.test_x[:n_test])
    train_y, test_y = data.train_y[:n_train].numpy(), data.test_y[:n_test].numpy()
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_z, train_y)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(5)).fit(train_z, train_y)
    return ProbeResult(logistic.score(test_z, test_y), knn.score(test_z, test_y), len(train_y), len(test_y))
