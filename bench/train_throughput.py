"""Training throughput: the engine against three plain loops, same model, same run, side by side.

Model: MLP 784-400-20-400-784, Bernoulli likelihood, Adam 1e-3, batch 128, the 60,000 MNIST images.
  tutorial       the pytorch/examples VAE loop: torchvision's per-sample MNIST with ToTensor() (a PIL
                 image per sample), a shuffling DataLoader, the model written as in that example
  numpy-loader   the same loop over a Dataset that returns rows of one NumPy array (no PIL)
  plain          the best plain loop we could write: the dataset as one tensor on the device, a minibatch
                 an index into it, logits with binary_cross_entropy_with_logits, fused Adam, nothing logged
  engine         core.engine.Trainer with live diagnostics off: every step's numbers logged, the
                 divergence check, the gradient norm
  engine-live    the same with the live diagnostics every 50 steps (the default)
  engine-compile the engine with --compile default (torch.compile of the step's forward and loss)
  engine-graphs  the engine with --compile reduce-overhead (the same, replayed as CUDA graphs; GPU only)
The ways alternate, one epoch each, repeated; medians and ratios to the plain loop are printed.

    python bench/train_throughput.py [--repeats 3] [--device auto] [--ways tutorial,plain,engine]
    python bench/train_throughput.py --profile        # where the engine's step spends its time
    python bench/train_throughput.py --decompose      # the engine's step built up from the plain loop, piece by piece
"""
import argparse
import contextlib
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

from core import data as datasets
from core.config import RunConfig
from core.engine import Trainer, describe_device, pick_device
from core.models import ModelConfig

BATCH = 128
MODEL = ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli")


class TutorialVAE(nn.Module):
    """The model of the pytorch/examples VAE, as users copy it; `logits` for the plain loop."""

    def __init__(self, logits=False):
        super().__init__()
        self.logits = logits
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        out = self.fc4(F.relu(self.fc3(z)))
        return (out if self.logits else torch.sigmoid(out)), mu, logvar


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class LoaderLoop:
    """The tutorial's loop over any DataLoader."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device
        self.model = TutorialVAE().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def epoch(self):
        for x, _ in self.loader:
            x = x.to(self.device)
            recon, mu, logvar = self.model(x)
            bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            self.optimizer.zero_grad()
            (bce + kld).backward()
            self.optimizer.step()


class PlainLoop:
    """In-memory tensors, index minibatches, logits, fused Adam where the device has it."""

    def __init__(self, x, device):
        self.x = x.to(device).flatten(1)
        self.device = device
        self.model = TutorialVAE(logits=True).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)

    def step(self, x):
        logits, mu, logvar = self.model(x)
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        self.optimizer.zero_grad(set_to_none=True)
        (bce + kld).backward()
        self.optimizer.step()

    def epoch(self):
        order = torch.randperm(len(self.x), device=self.device)
        for i in range(0, len(self.x), BATCH):
            self.step(self.x[order[i:i + BATCH]])


class EngineLoop:
    def __init__(self, data, device, live_every=0, compile="off"):
        self.trainer = Trainer(RunConfig(model=MODEL, batch_size=BATCH, lr=1e-3, device=str(device), compile=compile),
                               data, live_every=live_every)

    def epoch(self):
        self.trainer.step(self.trainer.steps_per_epoch)


class NumpyRows(torch.utils.data.Dataset):
    """A dataset as people write it over arrays: one NumPy row per item, collated by the DataLoader."""

    def __init__(self, x, y):
        self.x, self.y = x.flatten(1).numpy(), y.numpy()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def torchvision_mnist(tmp: Path, source: str):
    """torchvision's MNIST class reads uncompressed files from root/MNIST/raw."""
    from torchvision import datasets as tvd, transforms
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.IDX_FILES:
        with gzip.open(Path(source) / f"{name}.gz") as f, open(raw / name, "wb") as out:
            shutil.copyfileobj(f, out)
    return tvd.MNIST(str(tmp), train=True, transform=transforms.ToTensor())


def build(way, data, device, tmp):
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    torch.manual_seed(0)
    if way == "tutorial":
        loader = torch.utils.data.DataLoader(torchvision_mnist(Path(tmp), data.info.source), batch_size=BATCH,
                                             shuffle=True, **kwargs)
        return LoaderLoop(loader, device)
    if way == "numpy-loader":
        loader = torch.utils.data.DataLoader(NumpyRows(data.train_x, data.train_y), batch_size=BATCH, shuffle=True,
                                             **kwargs)
        return LoaderLoop(loader, device)
    if way == "plain":
        return PlainLoop(data.train_x, device)
    if way == "engine":
        return EngineLoop(data, device)
    if way == "engine-live":
        return EngineLoop(data, device, live_every=50)
    if way == "engine-compile":
        return EngineLoop(data, device, compile="default")
    if way == "engine-graphs":
        return EngineLoop(data, device, compile="reduce-overhead")
    raise SystemExit(f"unknown way {way!r}")


def timed_epoch(loop, device) -> float:
    sync(device)
    start = time.perf_counter()
    loop.epoch()
    sync(device)
    return time.perf_counter() - start


def profile(data, device):
    """Self time per operator of 200 engine steps against 200 plain-loop steps, after a warm-up."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    engine, plain = EngineLoop(data, device), PlainLoop(data.train_x, device)
    engine.trainer.step(20)
    for name, run in (("engine", lambda: engine.trainer.step(200)),
                      ("plain", lambda: [plain.step(plain.x[BATCH * i:BATCH * (i + 1)]) for i in range(200)])):
        run()
        with torch_profile(activities=activities) as prof:
            run()
            sync(device)
        print(f"== {name}: 200 steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def decompose(data, device, repeats: int, steps: int = 150):
    """The gap between the plain loop and the engine, built up one piece at a time on the same minibatches:
    the engine's network with the plain loop's loss by formula; then the engine's objective (the ELBO through
    torch.distributions); then the trainer's own random stream swapped in for the step; then the logged
    numbers, the gradient norm and the finite check; then the engine's step itself. Alternating blocks of
    `steps` steps, medians."""
    plain = PlainLoop(data.train_x, device)
    trainer = EngineLoop(data, device).trainer
    model, objective, optimizer = trainer.model, trainer.objective, trainer.optimizer
    x_all, y_all = trainer.train_x, trainer.train_y

    def batches():
        order = torch.randperm(len(x_all), device=device)
        return [order[i * BATCH:(i + 1) * BATCH] for i in range(steps)]

    def plain_loop():
        for idx in batches():
            plain.step(plain.x[idx])

    def network_formula():
        for idx in batches():
            x = x_all[idx]
            h = model.encoder_head(model.encoder_body(x))
            mu, logvar = h.chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
            optimizer.zero_grad(set_to_none=True)
            (recon + kl).backward()
            optimizer.step()

    def objective_step(idx, stream: bool, log: bool):
        with trainer.own_random_stream() if stream else contextlib.nullcontext():
            out = objective(model, x_all[idx], y_all[idx], 0)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
        if log:
            norm = torch.nn.utils.get_total_norm([p.grad for p in trainer.params if p.grad is not None])
            scalars = [out.loss, *(v for v in out.terms.values() if v.dim() == 0), norm]
            values = torch.cat([torch.stack([v.detach().float() for v in scalars]), out.terms["kl_per_dim"].detach()])
            bool(values.isfinite().all())
        optimizer.step()

    ways = {"plain loop": plain_loop, "engine network, loss by formula": network_formula,
            "+ the objective (torch.distributions)": lambda: [objective_step(i, False, False) for i in batches()],
            "+ the run's own random stream": lambda: [objective_step(i, True, False) for i in batches()],
            "+ logged numbers, gradient norm, finite check": lambda: [objective_step(i, True, True) for i in batches()],
            "the engine's step": lambda: trainer.step(steps)}
    for way in ways.values():
        way()
    seconds = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            sync(device)
            start = time.perf_counter()
            way()
            sync(device)
            seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["plain loop"])
    print(f"\n{'':<48}{'ms/step':>9}{'vs plain':>10}   (medians of {repeats} blocks of {steps} steps)")
    for name, s in seconds.items():
        m = statistics.median(s)
        print(f"{name:<48}{m / steps * 1e3:9.2f}{base / m:9.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ways", default="", help="comma-separated; default: all (the compiled ones on a GPU only)")
    parser.add_argument("--profile", action="store_true", help="print where the engine's step spends its time")
    parser.add_argument("--decompose", action="store_true", help="the engine's step built up from the plain loop")
    args = parser.parse_args()
    device = pick_device(args.device)
    data = datasets.load("mnist")
    if len(data.train_x) != 60000:
        sys.exit("needs the full MNIST files (set VAELAB_DATA)")
    print(f"device: {describe_device(device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.profile:
        return profile(data, device)
    if args.decompose:
        return decompose(data, device, max(args.repeats, 7))
    ways = args.ways.split(",") if args.ways else ["tutorial", "numpy-loader", "plain", "engine", "engine-live"] + (
        ["engine-compile", "engine-graphs"] if device.type == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        loops = {way: build(way, data, device, tmp) for way in ways}
        for loop in loops.values():  # warm-up (allocator, kernels, compilation, page cache), not timed
            timed_epoch(loop, device)
        seconds = {way: [] for way in ways}
        for r in range(args.repeats):
            for way, loop in loops.items():
                seconds[way].append(timed_epoch(loop, device))
            print(f"  repeat {r + 1}: " + ", ".join(f"{w} {s[-1]:.2f} s" for w, s in seconds.items()), flush=True)
    n = len(data.train_x)
    base = statistics.median(seconds["plain"]) if "plain" in seconds else None
    print(f"\n{'way':<16}{'samples/s':>12}{'s/epoch':>9}{'vs plain':>10}   (medians of {args.repeats})")
    for way, s in seconds.items():
        m = statistics.median(s)
        ratio = f"{base / m:.2f}x" if base else "-"
        print(f"{way:<16}{n / m:12,.0f}{m:9.2f}{ratio:>10}")


if __name__ == "__main__":
    os.environ.setdefault("VAELAB_OFFLINE", "1")
    main()
