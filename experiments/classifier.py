"""A classifier trained alongside a VAE on its latent codes (Ucar 2019, sec. 5 and Table 4).

Its updates and the VAE's alternate, each with the other frozen: the classifier reads codes the
encoder makes without gradient, and the VAE's loss never sees the classifier, so it measures what the
latent holds without shaping it. The codes are draws z ~ q(z|x), the latent variable the decoder reads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class LatentClassifier(nn.Module):
    """Table 4: Dense d-1024-1024-1024-classes, LeakyReLU(0.2), softmax; its own Adam (1e-4 in the paper)."""

    def __init__(self, latent_dim: int, n_classes: int, width: int = 1024, lr: float = 1e-4, seed: int = 0):
        super().__init__()
        layers, sizes = [], [latent_dim, width, width, width]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(width, n_classes))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)  # its own stream: it never moves the VAE's

    @torch.no_grad()
    def codes(self, network, x, y=None) -> torch.Tensor:
        """z ~ q(z|x) from a frozen network: eval mode, so batch norm's statistics stay as they are."""
        was_training = network.training
        network.eval()
        q = network.encode(x, y)
        noise = torch.randn(q.loc.shape, generator=self.generator).to(q.loc.device)
        network.train(was_training)
        return q.loc + q.scale * noise

    def update(self, network, x, y) -> tuple[float, float]:
        """One step on a labelled batch; returns its cross-entropy and accuracy before the step. The
        network is not touched."""
        logits = self.net(self.codes(network, x))
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item(), (logits.argmax(1) == y).float().mean().item()

    @torch.no_grad()
    def accuracy(self, network, x, y, batch_size: int = 1000) -> float:
        """Fraction of x classified as y, from one draw of each code."""
        right = sum((self.net(self.codes(network, xb)).argmax(1) == yb).sum().item()
                    for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
        return right / len(x)

    def save(self, path: Path, step: int, **streams: torch.Generator):
        """Its weights, its optimizer's state and the random streams it draws from, at `step`, written
        atomically beside the VAE's resumable checkpoint (safetensors: nothing is unpickled)."""
        from safetensors.torch import save_file

        from core import weights
        tensors, groups = weights.optimizer_tensors(self.optimizer)
        tensors |= {f"net.{k}": v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}
        tensors |= {f"stream.{k}": g.get_state() for k, g in {"codes": self.generator, **streams}.items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, tmp, metadata={"step": str(step), "groups": json.dumps(groups)})
        os.replace(tmp, path)

    def restore(self, path: Path, step: int, **streams: torch.Generator) -> bool:
        """Take back what save() wrote at `step`; False (nothing changed) when the file is missing or of
        another step."""
        from safetensors import safe_open

        from core import weights
        if not path.exists():
            return False
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("step") != str(step):
                return False
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        self.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        weights.load_optimizer(self.optimizer, tensors, json.loads(meta["groups"]))
        for name, g in {"codes": self.generator, **streams}.items():
            g.set_state(tensors[f"stream.{name}"])
        return True
