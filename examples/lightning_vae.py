"""The same VAE (examples/pytorch_examples_vae.py) trained by PyTorch Lightning, watched by the lab through
its callback: two lines, marked "# lab".

    python examples/lightning_vae.py --max-steps 1000
    ./lab            # Train page, "Watch a run folder": lightning-vae
"""
import argparse
from pathlib import Path

import lightning as L
import torch
from torch.distributions import kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from core.monitor import Monitor, lightning_callback  # lab
from pytorch_examples_vae import VAE, mnist  # beside this file, on the path python gives a script


class LitVAE(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.vae = VAE()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        q = self.vae.encode(x)
        recon = -self.vae.decode(q.rsample()).log_prob(x).mean()
        kl = kl_divergence(q, self.vae.prior()).mean()
        self.log_dict({"recon": recon, "kl": kl})  # the callback hands what is logged to the monitor
        return recon + kl

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(argv=None):
    import os
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("VAELAB_DATA", "../data"))
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--out", default=None, help="the run folder (default ~/vaelab-runs/lightning-vae)")
    args = parser.parse_args(argv)
    L.seed_everything(1, verbose=False)
    train_x, test_x = mnist(args.data)
    module = LitVAE()
    monitor = Monitor(module.vae, test_x[:500], every=args.every, name="lightning-vae", out=args.out,  # lab
                      factory=f"{Path(__file__).resolve().parent / 'pytorch_examples_vae.py'}:VAE")
    trainer = L.Trainer(max_steps=args.max_steps, callbacks=[lightning_callback(monitor)],  # lab
                        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, DataLoader(TensorDataset(train_x), batch_size=128, shuffle=True))
    print(f"run folder: {monitor.out}")
    return monitor


if __name__ == "__main__":
    main()
