"""A VAE written the way you might write your own, outside VAE Lab: a plain PyTorch module and a plain
training loop. VAE Lab diagnoses it because it follows the protocol of core/protocol.py: `encode(x)` returns
q(z|x), `decode(z)` returns p(x|z), `prior()` returns p(z), all torch.distributions; `latent_dim` is set, and
the halves are called `encoder` and `decoder`.

Train it on scikit-learn's 8x8 digits (no download), binarized afresh every step, and save its weights as safetensors:

    python examples/my_vae.py --steps 3000 --out my_vae.safetensors

then ask VAE Lab whether its posterior collapsed:

    python -m core diagnose --model examples/my_vae.py:digits_vae --weights my_vae.safetensors \
        --dataset digits --binarize dynamic
"""
import argparse

import torch
import torch.nn as nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence


class MyVAE(nn.Module):
    def __init__(self, image_size=28, latent_dim=10, hidden=256):
        super().__init__()
        self.latent_dim = latent_dim
        pixels = image_size * image_size
        self.image_size = image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, pixels))

    def encode(self, x):
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)

    def decode(self, z):
        logits = self.decoder(z).view(-1, 1, self.image_size, self.image_size)
        return Independent(Bernoulli(logits=logits), 3)

    def prior(self):
        return Independent(Normal(torch.zeros(self.latent_dim), torch.ones(self.latent_dim)), 1)

    def loss(self, x):
        """The negative ELBO, averaged over the batch."""
        q = self.encode(x)
        z = q.rsample()
        return (kl_divergence(q, self.prior()) - self.decode(z).log_prob(x)).mean()


def digits_vae():
    """The factory VAE Lab calls: the model for 8x8 digits, weights to be loaded into it."""
    return MyVAE(image_size=8, latent_dim=4, hidden=64)


def digits():
    from sklearn.datasets import load_digits
    x = torch.tensor(load_digits().data, dtype=torch.float32).view(-1, 1, 8, 8) / 16
    return x


def main():
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", default="my_vae.safetensors")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = digits()
    model = digits_vae()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(args.steps):
        batch = torch.bernoulli(x[torch.randint(len(x), (64,))])  # binary pixels, fresh every step
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 500 == 0:
            print(f"step {step:5d}  loss {loss.item():.2f}")
    save_file(model.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
