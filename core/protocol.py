"""Your own VAE: the protocol a PyTorch module follows so that every diagnostic, `evaluate` and
`vaelab diagnose --model module:factory` run on it, without our VAE class.

    class MyVAE(torch.nn.Module):
        latent_dim: int                      # d
        encoder: nn.Module                   # optional: the two halves' parameters, for the gradient
        decoder: nn.Module                   #   diagnostics (which are skipped without them)
        def encode(self, x) -> Distribution  # q(z|x) for a batch x (B, C, H, W): a Normal or Bernoulli with
                                             #   batch shape (B, d) (or that wrapped in Independent(., 1)),
                                             #   or a OneHotCategorical over d categories
        def decode(self, z) -> Distribution  # p(x|z) for codes z (B, d): log_prob(x) gives one number per image (B,)
          -- or, for a likelihood that needs x (an autoregressive decoder, teacher-forced), instead of decode:
        def log_likelihood(self, x, z) -> Tensor   # log p(x|z), one number per example (B,)
        def sample(self, z) -> Tensor        # optional: one x ~ p(x|z) per code, for the views that draw pictures
        def prior(self) -> Distribution      # p(z): Normal(0, 1) or Bernoulli(1/2) with batch shape (d,), or a
                                             #   uniform OneHotCategorical; the same family as q

Data need not be images: with log_likelihood, x is whatever the data holds (token ids, say), and the views
that draw pictures say why they are skipped. Pixels reach encode and log_prob as the dataset gives them (N x C x H x W in [0, 1]; binarized when asked).
Its posterior is the encoder's q(z|x), so it is measured with objectives whose posterior that is (the plain
ELBO by default, beta-VAE, IWAE, free bits, ...). Weights come from a safetensors file, never a pickle:
`safetensors.torch.save_file(model.state_dict(), "my_vae.safetensors")`.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, OneHotCategorical

from . import limits, safefs
from .errors import CheckpointError, ConfigError, LabError
from .models import ModelConfig
from .posterior import as_event

FAMILIES = {Normal: "gaussian", Bernoulli: "bernoulli", OneHotCategorical: "categorical"}
LIKELIHOODS = {Bernoulli: "bernoulli", Normal: "gaussian"}  # any other decoder family is "other", by its name


def per_dimension(dist, what: str, batch: tuple) -> Distribution:
    """A returned distribution as the per-dimension one the posterior code reads; ConfigError if it is not one."""
    if not isinstance(dist, Distribution):
        raise ConfigError(f"{what} must return a torch.distributions object, not {type(dist).__name__}")
    if isinstance(dist, Independent) and dist.reinterpreted_batch_ndims == 1 and type(dist.base_dist) in (Normal, Bernoulli):
        dist = dist.base_dist
    if type(dist) not in FAMILIES:
        raise ConfigError(f"{what} returned a {type(dist).__name__}; it must be a Normal or Bernoulli per "
                          f"dimension, or a OneHotCategorical")
    shape = tuple(dist.batch_shape) + (tuple(dist.event_shape) if isinstance(dist, OneHotCategorical) else ())
    if shape != batch:
        raise ConfigError(f"{what} returned a distribution over shape {shape}, expected {batch}")
    return dist


class UserVAE(nn.Module):
    """A module that follows the protocol, with the few things our code reads from a network (cfg, the
    device, the mean image, prior samples, the halves' parameters)."""

    def __init__(self, module: nn.Module, x: torch.Tensor, name: str = "", binary: bool = False):
        """x: a few images as the data gives them, to check the protocol on before any diagnostic runs;
        binary: whether the data was binarized (else a refusal of grey pixels suggests it)."""
        super().__init__()
        self.module, self.name = module, name
        d = getattr(module, "latent_dim", None)
        if not isinstance(d, int) or d < 1:
            raise ConfigError(f"{name or 'the model'} must have an attribute latent_dim, a whole number >= 1")
        image_shape = tuple(x.shape[1:])
        with torch.no_grad():
            x = x.to(next(module.parameters(), torch.zeros(())).device)
            q = per_dimension(module.encode(x), "encode(x)", (len(x), d))
            prior = per_dimension(module.prior(), "prior()", (d,))
            if type(prior) is not type(q):
                raise ConfigError(f"prior() is a {type(prior).__name__} but encode(x) a {type(q).__name__}; they must be one family")
            if isinstance(prior, Normal) and not (torch.all(prior.loc == 0) and torch.all(prior.scale == 1)):
                raise ConfigError("a Gaussian prior() must be the standard normal N(0, I), as the diagnostics assume")
            if not callable(getattr(module, "decode", None)) and not callable(getattr(module, "log_likelihood", None)):
                raise ConfigError("the model needs decode(z), returning p(x|z), or log_likelihood(x, z)")
            p = self._decoded(q.mean)
            if not isinstance(p, Distribution):
                raise ConfigError(f"decode(z) must return a torch.distributions object, not {type(p).__name__}")
            try:
                log_p = p.log_prob(x)
            except ValueError as e:  # torch.distributions' argument checks, e.g. grey pixels for a Bernoulli
                grey = "support" in str(e) and not binary and bool(((x > 0) & (x < 1)).any())
                raise ConfigError(f"{p.what} refuses this data's images: {str(e).splitlines()[0][:200]}"
                                  + (" (its pixels are grey; binary pixels: --binarize dynamic)" if grey else "")) from None
            if tuple(log_p.shape) != (len(x),):
                raise ConfigError(f"{p.what} must give one number per example, shape (B,); it gave {tuple(log_p.shape)}"
                                  + (" (wrap a per-pixel distribution in Independent(., 3))" if p.what[0] == "d" else ""))
        base = p.base_dist if isinstance(p, Independent) else p
        # what its decoder is: Bernoulli, Normal, ContinuousBernoulli, ..., or its own log_likelihood(x, z)
        self.family = "log_likelihood" if isinstance(p, Likelihood) else type(base).__name__
        self.images = len(image_shape) == 3 and image_shape[0] in (1, 3)  # else pictures are not drawn
        shape = image_shape if self.images else (1, 1, int(torch.tensor(image_shape).prod()))  # a size, no picture
        self.cfg = ModelConfig(hidden=(), latent_dim=d, likelihood=LIKELIHOODS.get(type(base), "other"),
                               image_shape=shape, latent=FAMILIES[type(q)])
        self.register_buffer("prior_loc", torch.zeros(d, device=x.device))  # follows .to(): the model's device

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, x, y=None):
        return per_dimension(self.module.encode(x), "encode(x)", (len(x), self.latent_dim))

    def decode(self, z, y=None):
        return self._decoded(z)

    def _decoded(self, z):
        if callable(getattr(self.module, "decode", None)):
            p = self.module.decode(z)
            if isinstance(p, Distribution):
                p.what = "decode(z).log_prob(x)"
            return p
        return Likelihood(self.module, z)

    def prior(self):
        """The module's p(z), on the model's device: a prior written with torch.zeros(d) lives on the CPU, and
        its draws would meet a decoder on the GPU."""
        p = per_dimension(self.module.prior(), "prior()", (self.latent_dim,))
        device = self.prior_loc.device
        if isinstance(p, Normal):
            return p if p.loc.device == device else Normal(p.loc.to(device), p.scale.to(device))
        return p if p.probs.device == device else type(p)(probs=p.probs.to(device))

    def log_prior(self, z):
        return as_event(self.prior()).log_prob(z)

    def mean_image(self, z, y=None):
        if not self.images:
            raise ConfigError(f"{self.name or 'this model'}'s data are not images: there is no picture to draw")
        return self.decode(z).mean

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self._half("encoder").parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self._half("decoder").parameters())

    def _half(self, name: str) -> nn.Module:
        part = getattr(self.module, name, None)
        if not isinstance(part, nn.Module):
            raise ConfigError(f"this needs the model's {name} as a submodule named {name!r}")
        return part

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        if self.cfg.latent == "gaussian":
            z = torch.randn(n, self.latent_dim, device=self.prior_loc.device, generator=generator)
        else:
            z = self.prior().sample((n,))
        return self.mean_image(z)

    @torch.no_grad()
    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.mean_image(self.encode(x).mean)


class Likelihood(Distribution):
    """p(x|z) of a model that defines log_likelihood(x, z) rather than decode(z): its log_prob is the model's
    own (teacher-forced, for an autoregressive decoder), and a draw is its sample(z), where it has one."""
    arg_constraints, what = {}, "log_likelihood(x, z)"

    def __init__(self, module: nn.Module, z: torch.Tensor):
        self.module, self.z = module, z
        super().__init__(batch_shape=z.shape[:1], validate_args=False)

    def log_prob(self, x):
        return self.module.log_likelihood(x, self.z)

    def sample(self, sample_shape=()):
        draw = getattr(self.module, "sample", None)
        if not callable(draw):
            raise ConfigError("the model defines log_likelihood(x, z) but no sample(z): no pictures can be drawn")
        return draw(self.z)

    @property
    def mean(self):  # the pages' "decoder's mean": a draw, as for the lab's own autoregressive decoder
        return self.sample()


def import_factory(text: str):
    """'package.module:factory' or 'path/to/file.py:factory' -> the callable. The module is the user's own code."""
    where, _, attr = text.rpartition(":")
    if not where or not attr.isidentifier():
        raise LabError(f"--model {text!r}: write it as module:factory or path/to/file.py:factory")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise LabError(f"--model {text!r}: no file {path}")
            folder = str(path.resolve().parent)
            if folder not in sys.path:  # as `python file.py` would: the modules beside it import
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: the user's package from here
            module = importlib.import_module(where)
    except LabError:
        raise
    except Exception as e:  # the user's code failed to import: say so in one line, with its own message
        raise LabError(f"--model {text!r}: importing {where} failed: {type(e).__name__}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LabError(f"--model {text!r}: {where} has no callable {attr!r}")
    return factory


def load_user_model(text: str, weights: str | None, x: torch.Tensor, device="cpu", binary: bool = False):
    """(UserVAE, the weights' SHA-256 or None) for `--model module:factory [--weights FILE]`: factory() builds
    the module, the safetensors file (never a pickle) fills it, strictly; x, a few of the data's images,
    checks it follows the protocol."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors
    from . import weights as weights_io

    try:
        module = import_factory(text)()
    except LabError:
        raise
    except Exception as e:
        raise LabError(f"--model {text!r}: calling the factory failed: {type(e).__name__}: {e}") from None
    if not isinstance(module, nn.Module):
        raise LabError(f"--model {text!r}: the factory returned a {type(module).__name__}, not a torch.nn.Module")
    digest = None
    if weights:
        path = Path(weights)
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: weights must be a .safetensors file (a pickle is never loaded)")
        try:
            blob = safefs.read_regular(path, limits.maximum("weights_bytes"))
            tensors = load_tensors(blob)
        except LabError as e:
            raise CheckpointError(str(e)) from None
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"{path}: cannot be read as safetensors ({e})") from None
        bad = weights_io.non_finite(tensors)
        if bad:
            raise CheckpointError(f"{path}: non-finite values in {', '.join(bad[:3])}")
        try:
            result = module.load_state_dict(tensors, strict=False)
        except RuntimeError as e:  # a tensor of the wrong shape
            raise CheckpointError(f"{path} does not fit {text}: {str(e).strip().splitlines()[-1].strip()}") from None
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"{path} does not fit {text}: missing {', '.join(result.missing_keys[:4]) or 'none'}; "
                                  f"unexpected {', '.join(result.unexpected_keys[:4]) or 'none'}")
        digest = weights_io.sha256(blob)
    try:
        return UserVAE(module.to(device).eval(), x, text, binary), digest
    except ConfigError as e:
        raise ConfigError(f"--model {text}: {e}") from None
    except RuntimeError as e:  # a shape mismatch inside the user's layers on our probe batch
        raise ConfigError(f"--model {text}: running it on a batch of {tuple(x.shape[1:])} images failed: "
                          f"{str(e).splitlines()[0][:200]}") from None


def user_bundle(text: str, weights: str | None, data, objective: str = "vae", device="cpu"):
    """The model value (core.bundle.Bundle) of a user's module on a dataset: identified by its weights'
    SHA-256, measured with an objective whose posterior is the encoder's q(z|x)."""
    from .bundle import Bundle, Ref
    from .config import RunConfig
    from .objectives import Objective, build
    from . import weights as weights_io

    from .evaluate import eval_split
    from .rng import seeded

    obj = build(objective)
    if type(obj).posterior is not Objective.posterior or type(obj).attach is not Objective.attach:
        raise ConfigError(f"the {objective} objective has its own posterior (a flow, a refinement, a Laplace fit) "
                          f"that a user's model does not define; measure it with vae, beta-vae, iwae or free-bits")
    with seeded(torch.device("cpu"), 0):
        x = eval_split(data, 4)[0]
    network, digest = load_user_model(text, weights, x, device, binary=data.spec.binarize != "none")
    digest = digest or weights_io.sha256(weights_io.to_bytes(weights_io.state_tensors(network, obj)))
    config = RunConfig(data=data.spec, model=network.cfg, objective=objective, settings=obj.settings())
    return Bundle(network, obj.to(device), config, Ref(digest, 0), data.info, len(data.train_x),
                  meta={"model": text, "weights": weights})
