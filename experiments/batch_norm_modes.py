"""How much the VAE CNN's test bound (experiments/improving_vaes_table1.py) depends on which batch-norm
statistics it reads: the running averages (eval mode, what every table reports) or each test batch's own
(train mode, batches of 100). Reads the models the table saved.

    python experiments/batch_norm_modes.py
"""
import torch

from common import model_path, save

from core import checkpoint
from core import data as datasets
from core.data import DataSpec
from core.evaluate import evaluate


def main():
    data = datasets.load(DataSpec("mnist", binarize="invert-nonzero"))
    rows = {}
    for z in (3, 5, 10, 20, 200):
        path = model_path("improving_vaes_table1", f"VAE CNN z={z} ")
        if not checkpoint.paths(path)[1].exists():
            continue
        bundle = checkpoint.load(path)
        running = evaluate(bundle, data, batch_size=100).elbo
        bundle.network.train()
        bundle.network.eval = lambda: bundle.network  # evaluate() asks for eval mode; keep the batch statistics
        with torch.no_grad():
            batch = evaluate(bundle, data, batch_size=100).elbo
        last = [r for r in bundle.history if r["step"] > bundle.step - 100]  # a saved history is thinned
        train_loss = sum(r["loss"] for r in last) / len(last)
        rows[f"z={z}"] = {"running_statistics": round(running, 2), "batch_statistics": round(batch, 2),
                          "train_loss_last_100_steps": round(train_loss, 2)}
        print(f"z={z:<4d} ELBO with running statistics {running:8.2f}, with batch statistics {batch:8.2f}; "
              f"training loss {train_loss:.2f}")
    save("batch_norm_modes", {"elbo": rows})


if __name__ == "__main__":
    main()
