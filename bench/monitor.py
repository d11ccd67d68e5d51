"""What core.monitor costs a user's own loop: the loop of examples/pytorch_examples_vae.py (784-400-20, batch
128, MNIST) and of examples/text_vae.py (a GRU over words, batch 64), each timed without the monitor and with
it (every = 100 steps, 500 held-out examples), in alternating blocks side by side, so the machine's noise falls
on both alike. Also what one measurement (the live row, the collapse verdict, the pictures or words, the
kept step and the folder rewritten) takes.

    python bench/monitor.py [--steps 300] [--repeats 5] [--threads 1]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.distributions import kl_divergence

from core.monitor import Monitor
from core.protocol import import_factory

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str):
    """An example's module, imported as --model imports a file."""
    return sys.modules[import_factory(f"{EXAMPLES / name}.py:main").__module__]


def loop(model, train, batch: int, log_likelihood):
    """One step of a plain loop: Adam on −ELBO (one draw), the terms as the loop would hand them to the monitor."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(_):
        x = train[torch.randint(len(train), (batch,))]
        q = model.encode(x)
        terms = {"recon": -log_likelihood(x, q.rsample()).mean(), "kl": kl_divergence(q, model.prior()).mean()}
        loss = terms["recon"] + terms["kl"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()} | {k: v.item() for k, v in terms.items()}
    return step


def image_loop():
    vae = example("pytorch_examples_vae")
    train_x, test_x = vae.mnist("")
    model = vae.VAE()
    return model, test_x[:500], loop(model, train_x, 128, lambda x, z: model.decode(z).log_prob(x)), {}


def text_loop():
    text_vae = example("text_vae")
    train, held_out = text_vae.read_words()
    model = text_vae.build()
    return model, held_out[:500], loop(model, train, 64, model.log_likelihood), {"as_text": text_vae.as_text}


def block(step, steps: int, monitor=None, start: int = 0) -> float:
    """Seconds per step of `steps` steps of the loop, with the monitor's step() after each when given."""
    began = time.perf_counter()
    for i in range(start + 1, start + steps + 1):
        terms = step(i)
        if monitor is not None:
            monitor.step(i, **terms)
    return (time.perf_counter() - began) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps a block (a multiple of 100: whole measurements)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); blocks of {args.steps} steps, {args.repeats} of each, "
          "alternating; the monitor every 100 steps on 500 held-out examples")
    print("| loop | step, without | step, with the monitor | cost | a row at its dearest |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, make in (("pytorch/examples VAE, MNIST, batch 128", image_loop), ("text GRU VAE, words, batch 64", text_loop)):
        torch.manual_seed(0)
        model, held_out, step, extra = make()
        with tempfile.TemporaryDirectory() as folder:
            monitor = Monitor(model, held_out, every=100, out=Path(folder) / "run", **extra)
            block(step, 50)  # warm up: allocator, first calls
            plain, watched, done = [], [], 0
            for _ in range(args.repeats):
                plain.append(block(step, args.steps))
                watched.append(block(step, args.steps, monitor, start=done))
                done += args.steps
            measures = []
            for _ in range(args.repeats):  # the most a row costs: with its verdict, pictures and the folder written
                done += 100
                began = time.perf_counter()
                monitor.measure(done, last=True)
                measures.append(time.perf_counter() - began)
        p, w, m = statistics.median(plain), statistics.median(watched), statistics.median(measures)
        print(f"| {name} | {p * 1000:.1f} ms | {w * 1000:.1f} ms | {100 * (w / p - 1):+.1f}% | {m * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
