"""A VAE built the way Pythae builds one, brought to VAE Lab by a short adapter.

Pythae's encoders return an output holding `embedding` (the posterior mean) and `log_covariance` (its
log-variance), its decoders an output holding `reconstruction` (the Bernoulli means, for binary images), and
its VAE's loss is binary cross-entropy plus the closed-form KL. The classes below keep that shape (plain
dicts stand for Pythae's ModelOutput, so the file runs without Pythae installed); `LabAdapter` is all the lab
needs: encode, decode and prior as torch.distributions, and the two halves by name.

    python examples/pythae_style_vae.py --steps 600 --out pythae_style.safetensors
    python -m core diagnose --model examples/pythae_style_vae.py:build --weights pythae_style.safetensors \\
        --dataset digits --binarize dynamic
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal


class Encoder(nn.Module):          # as a Pythae BaseEncoder: forward(x) -> {"embedding", "log_covariance"}
    def __init__(self, pixels: int, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        self.mean, self.log_var = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.body(x)
        return {"embedding": self.mean(h), "log_covariance": self.log_var(h)}


class Decoder(nn.Module):          # as a Pythae BaseDecoder: forward(z) -> {"reconstruction"}
    def __init__(self, side: int, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.side = side
        self.body = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, side * side), nn.Sigmoid())

    def forward(self, z):
        return {"reconstruction": self.body(z).view(-1, 1, self.side, self.side)}


class PythaeStyleVAE(nn.Module):   # its forward and loss as Pythae's VAE computes them
    def __init__(self, side: int = 8, latent_dim: int = 4):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder, self.decoder = Encoder(side * side, latent_dim), Decoder(side, latent_dim)

    def forward(self, x):
        out = self.encoder(x)
        mu, log_var = out["embedding"], out["log_covariance"]
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = self.decoder(z)["reconstruction"]
        bce = F.binary_cross_entropy(recon.flatten(1), x.flatten(1), reduction="none").sum(-1)
        kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1)
        return {"loss": (bce + kl).mean(), "recon_loss": bce.mean(), "reg_loss": kl.mean()}


class LabAdapter(nn.Module):       # what VAE Lab reads (core/protocol.py)
    def __init__(self, model: PythaeStyleVAE):
        super().__init__()
        self.model, self.latent_dim = model, model.latent_dim

    encoder = property(lambda self: self.model.encoder)  # the halves by name, for the gradient diagnostics
    decoder = property(lambda self: self.model.decoder)

    def encode(self, x):
        out = self.model.encoder(x)
        return Normal(out["embedding"], torch.exp(0.5 * out["log_covariance"]))

    def decode(self, z):
        probs = self.model.decoder(z)["reconstruction"].clamp(1e-6, 1 - 1e-6)  # BCE's own clamp, as a distribution
        return Independent(Bernoulli(probs=probs), 3)

    def prior(self):
        return Normal(torch.zeros(self.latent_dim), torch.ones(self.latent_dim))


def build():
    """The factory the lab calls: the adapter around the model, weights to be loaded into it."""
    return LabAdapter(PythaeStyleVAE())


def main(argv=None):
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default="pythae_style.safetensors")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x = torch.tensor(load_digits().data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    adapter = build()
    optimizer = torch.optim.Adam(adapter.parameters(), lr=1e-3)
    for _ in range(args.steps):
        loss = adapter.model(torch.bernoulli(x[torch.randint(len(x), (64,))]))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_file(adapter.state_dict(), args.out)
    print(f"loss {loss.item():.2f} after {args.steps} steps; saved {args.out}")


if __name__ == "__main__":
    main()
