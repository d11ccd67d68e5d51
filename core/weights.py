"""The one (de)serializer of a model's weights, shared by checkpoint files and the training process's pipe.

A model's tensors are the network's ("model.*") and its objective's ("objective.*": a flow's layers),
written as safetensors, which holds tensors only: reading one never runs code.
"""
from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load as tensors_from_bytes, save as tensors_to_bytes

from .config import RunConfig
from .models import VAE
from .objectives import build


NETWORK, OBJECTIVE = "model.", "objective."  # the prefixes of the network's and the objective's tensors


def state_tensors(network, objective) -> dict[str, torch.Tensor]:
    """CPU copies of every tensor of the network and its objective, under their prefixed names."""
    tensors = {NETWORK + k: v for k, v in network.state_dict().items()}
    tensors |= {OBJECTIVE + k: v for k, v in objective.state_dict().items()}
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def states(tensors: dict) -> tuple[dict, dict]:
    """(the network's state dict, the objective's) from a file's or a pipe's prefixed tensors."""
    return ({k.removeprefix(NETWORK): v for k, v in tensors.items() if k.startswith(NETWORK)},
            {k.removeprefix(OBJECTIVE): v for k, v in tensors.items() if k.startswith(OBJECTIVE)})


def non_finite(tensors: dict) -> list[str]:
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def to_bytes(tensors: dict) -> bytes:
    return tensors_to_bytes(tensors)


def from_bytes(blob: bytes) -> dict[str, torch.Tensor]:
    """Parses a JSON header and raw arrays: no pickle. Raises safetensors' own errors on a bad file."""
    return tensors_from_bytes(blob)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def build_from(config: RunConfig, tensors: dict):
    """(network, objective) as the config describes them, holding the given tensors. Built on the meta
    device (no memory, no random draws) and given the tensors as parameters, so a hostile config asking
    for a billion-unit layer costs nothing before the shapes are refused. Raises on a mismatch."""
    with torch.device("meta"):
        network = VAE(config.model)
        objective = build(config.objective, config.settings, network)
    network_state, objective_state = states(tensors)
    network.load_state_dict(network_state, assign=True)
    objective.load_state_dict(objective_state, assign=True)
    return network.eval(), objective


# A run's training state, so a resumed run takes exactly the steps it would have taken: the optimizer's
# per-parameter tensors ("train.optimizer.<param>.<name>") and the random stream ("train.rng.*") go into
# the same safetensors file as the weights; the optimizer's hyperparameters are JSON in the sidecar.

def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    state = optimizer.state_dict()
    tensors = {f"train.optimizer.{i}.{name}": value.detach().cpu().contiguous().clone()
               for i, entry in state["state"].items() for name, value in entry.items()
               if isinstance(value, torch.Tensor)}
    return tensors, state["param_groups"]


IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list[dict]):
    """Put the state optimizer_tensors() took back; raises ValueError where it does not fit the parameters."""
    prefix = "train.optimizer."
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in state.items():
        if not 0 <= index < len(params):
            raise ValueError(f"optimizer state for parameter {index}, but the model has {len(params)}")
        shapes = {name: tuple(v.shape) for name, v in entry.items() if v.dim() > 0}
        if any(shape != tuple(params[index].shape) for shape in shapes.values()):
            raise ValueError(f"optimizer state of parameter {index} has shape {shapes}, "
                             f"the parameter {tuple(params[index].shape)}")
    # How the update is computed (one fused kernel or not) is this machine's choice, not the saved run's.
    groups = [{**group, **{k: mine[k] for k in IMPLEMENTATION if k in mine}}
              for group, mine in zip(groups, optimizer.param_groups)] + groups[len(optimizer.param_groups):]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
