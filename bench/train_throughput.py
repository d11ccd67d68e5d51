"""Training throughput: this engine against the usual tutorial loop, same model size, same run.

Model: MLP 784-400-20-400-784, Bernoulli likelihood, Adam 1e-3, batch 128, full MNIST.
  engine    core.engine.Trainer: the dataset is one tensor on the device, minibatches are index draws.
  tutorial  the pytorch/examples VAE loop: torchvision's per-sample MNIST dataset with ToTensor(),
            a shuffling DataLoader, and the same-sized model written as in that example.
The two ways alternate, one epoch at a time, and the medians are reported with their ratio.

    python bench/train_throughput.py [--repeats 3] [--device auto]
"""
import argparse
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core import data as datasets  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.engine import Trainer, describe_device, pick_device  # noqa: E402
from core.models import ModelConfig  # noqa: E402


class TutorialVAE(nn.Module):
    """The model of the pytorch/examples VAE, as users copy it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def tutorial_epoch(loader, model, optimizer, device) -> float:
    start = time.perf_counter()
    for x, _ in loader:
        x = x.to(device)
        recon, mu, logvar = model(x)
        bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        optimizer.zero_grad()
        (bce + kld).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def engine_epoch(trainer) -> float:
    start = time.perf_counter()
    trainer.step(trainer.steps_per_epoch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def torchvision_mnist(tmp: Path, source: str):
    """torchvision's MNIST class reads uncompressed files from root/MNIST/raw."""
    from torchvision import datasets as tvd, transforms
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.IDX_FILES:
        with gzip.open(Path(source) / f"{name}.gz") as f, open(raw / name, "wb") as out:
            shutil.copyfileobj(f, out)
    return tvd.MNIST(str(tmp), train=True, transform=transforms.ToTensor())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    data = datasets.load("mnist")
    if len(data.train_x) != 60000:
        sys.exit("needs the full MNIST files (set VAELAB_DATA)")
    n = len(data.train_x)

    trainer = Trainer(RunConfig(model=ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli"),
                                batch_size=128, lr=1e-3, device=str(device)), data)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = torchvision_mnist(Path(tmp), data.info.source)
        kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
        loader = torch.utils.data.DataLoader(dataset, batch_size=128, shuffle=True, **kwargs)
        torch.manual_seed(0)
        model = TutorialVAE().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        print(f"device: {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
        # warm-up (allocator, kernels, page cache), not timed
        trainer.step(20)
        for i, _ in zip(range(20), loader):
            pass
        engine_s, tutorial_s = [], []
        for r in range(args.repeats):
            engine_s.append(engine_epoch(trainer))
            tutorial_s.append(tutorial_epoch(loader, model, optimizer, device))
            print(f"  epoch {r + 1}: engine {engine_s[-1]:.2f} s, tutorial {tutorial_s[-1]:.2f} s", flush=True)

    e, t = statistics.median(engine_s), statistics.median(tutorial_s)
    print(f"engine:   {n / e:10,.0f} samples/s  ({e:.2f} s per epoch, median of {args.repeats})")
    print(f"tutorial: {n / t:10,.0f} samples/s  ({t:.2f} s per epoch, median of {args.repeats})")
    print(f"ratio engine/tutorial: {t / e:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
