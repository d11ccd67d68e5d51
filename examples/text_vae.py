"""A character-level GRU VAE over an English word list, where posterior collapse is most famous (Bowman et al.
2016): a GRU decoder that sees the previous letters can spell words without z. Trained by its own loop and
watched by the lab's monitor, with one of three objectives:

    vae          the plain ELBO
    free-bits    each dimension's batch KL counted as at least --free-bits nats (Kingma et al. 2016)
    aggressive   He et al. (2019): encoder-only steps until their loss stops falling, before each decoder
                 step, while the mutual information the monitor measures on held-out words keeps rising

    python examples/text_vae.py --objective vae --steps 3000
    ./lab            # Train page, "Watch a run folder": text-vae

Its likelihood needs x (the decoder reads the letters before each one), so the model gives the lab
log_likelihood(x, z) rather than decode(z), and sample(z) for the words the monitor writes at fixed codes.
The words are Debian's word list (package wamerican): /usr/share/dict/words.
"""
import argparse
import re
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.nn.utils.rnn import pack_padded_sequence

from core.monitor import Monitor

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PAD, BOS, EOS = 0, 1, 2            # then the letters, from 3
LONGEST = 12                        # letters in a word; a row is BOS, the letters, EOS, padding
WORDS = "/usr/share/dict/words"


def read_words(path: str = WORDS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held out) token rows of the list's lower-case words of 3 to 12 letters, nine to one."""
    words = sorted({w for w in Path(path).read_text(errors="ignore").split() if re.fullmatch(f"[a-z]{{3,{LONGEST}}}", w)})
    rows = torch.full((len(words), LONGEST + 2), PAD)
    for i, w in enumerate(words):
        rows[i, :len(w) + 2] = torch.tensor([BOS, *(3 + LETTERS.index(c) for c in w), EOS])
    rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))]
    cut = len(rows) // 10
    return rows[cut:], rows[:cut]


def as_text(rows: torch.Tensor) -> list[str]:
    """Token rows back to words (up to the first end)."""
    out = []
    for row in rows.tolist():
        letters = []
        for t in row[1:]:
            if t in (EOS, PAD):
                break
            letters.append(LETTERS[t - 3] if t >= 3 else "?")
        out.append("".join(letters))
    return out


class TextVAE(nn.Module):
    latent_dim = 16

    def __init__(self, embed: int = 32, hidden: int = 128):
        super().__init__()
        d = self.latent_dim
        self.encoder = nn.ModuleDict({"embed": nn.Embedding(3 + len(LETTERS), embed, padding_idx=PAD),
                                      "rnn": nn.GRU(embed, hidden, batch_first=True), "out": nn.Linear(hidden, 2 * d)})
        self.decoder = nn.ModuleDict({"embed": nn.Embedding(3 + len(LETTERS), embed, padding_idx=PAD),
                                      "init": nn.Linear(d, hidden), "rnn": nn.GRU(embed + d, hidden, batch_first=True),
                                      "out": nn.Linear(hidden, 3 + len(LETTERS))})

    def encode(self, x):
        e = self.encoder
        lengths = (x != PAD).sum(1).cpu()
        _, h = e["rnn"](pack_padded_sequence(e["embed"](x), lengths, batch_first=True, enforce_sorted=False))
        mu, log_var = e["out"](h[-1]).chunk(2, -1)
        return Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)

    def _logits(self, inputs, z, h=None):
        d = self.decoder
        h = torch.tanh(d["init"](z))[None] if h is None else h
        steps = torch.cat([d["embed"](inputs), z[:, None].expand(-1, inputs.shape[1], -1)], -1)
        out, h = d["rnn"](steps, h)
        return d["out"](out), h

    def log_likelihood(self, x, z):
        """log p(x|z), teacher-forced: each letter (and the end) scored given z and the letters before it."""
        logits, _ = self._logits(x[:, :-1], z)
        target = x[:, 1:]
        return (Categorical(logits=logits).log_prob(target) * (target != PAD)).sum(1)

    @torch.no_grad()
    def sample(self, z):
        """One word per code, letter by letter (the most likely letter each time: a code's word)."""
        rows = torch.full((len(z), LONGEST + 2), PAD, device=z.device)
        rows[:, 0] = BOS
        token, h, done = rows[:, :1], None, torch.zeros(len(z), dtype=torch.bool, device=z.device)
        for i in range(1, LONGEST + 2):
            logits, h = self._logits(token, z, h)
            token = logits[:, -1].argmax(-1, keepdim=True) if i <= LONGEST else torch.full_like(token, EOS)
            rows[:, i] = torch.where(done, PAD, token[:, 0])
            done |= token[:, 0] == EOS
        return rows

    def prior(self):
        return Independent(Normal(torch.zeros(self.latent_dim), torch.ones(self.latent_dim)), 1)


def build():
    """The factory the lab calls to rebuild the model (weights aside)."""
    return TextVAE()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", choices=("vae", "free-bits", "aggressive"), default="vae")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--free-bits", type=float, default=0.25, help="nats per dimension (free-bits)")
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--words", default=WORDS)
    parser.add_argument("--out", default=None, help="the run folder (default ~/vaelab-runs/text-OBJECTIVE)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train, held_out = read_words(args.words, args.seed)
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    encoder_only = torch.optim.Adam(model.encoder.parameters(), lr=1e-3)
    monitor = Monitor(model, held_out[:500], every=args.every, name=f"text-{args.objective}", out=args.out,
                      factory=f"{__file__}:build", as_text=as_text)

    def batch():
        return train[torch.randint(len(train), (args.batch_size,))]

    def terms(x):
        q = model.encode(x)
        recon = -model.log_likelihood(x, q.rsample()).mean()
        kl_per_dim = kl_divergence(q.base_dist, Normal(0.0, 1.0)).mean(0)
        return recon, kl_per_dim

    aggressive, best_mi, flat = args.objective == "aggressive", -1.0, 0
    for step in range(1, args.steps + 1):
        if aggressive:  # the encoder catches up with the decoder before each decoder step (He et al., Alg. 1)
            losses = []
            for _ in range(50):
                recon, kl = terms(batch())
                loss = recon + kl.sum()
                encoder_only.zero_grad()
                loss.backward()
                encoder_only.step()
                losses.append(loss.item())
                if len(losses) >= 10 and sum(losses[-5:]) >= sum(losses[-10:-5]):
                    break
        x = batch()
        recon, kl = terms(x)
        kl_cost = kl.clamp(min=args.free_bits).sum() if args.objective == "free-bits" else kl.sum()
        loss = recon + kl_cost
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        monitor.step(step, loss=loss.item(), recon=recon.item(), kl=kl.sum().item())
        if aggressive and step % args.every == 0:  # back to plain steps once the held-out MI stops rising
            mi = monitor.live[-1]["mi"]
            best_mi, flat = (mi, 0) if mi > best_mi else (best_mi, flat + 1)
            if flat >= 3:
                aggressive = False
                print(f"step {step}: the MI stopped rising at {best_mi:.2f} nats; plain steps from here", file=sys.stderr)
    monitor.close()
    row = monitor.live[-1]
    print(f"{args.objective}: step {row['step']}, held-out KL {row['kl']:.2f} nats, AU {row['au']}/16, "
          f"MI {row['mi']:.2f}, verdicts {row['verdicts']}; words at fixed codes: {' '.join(row.get('samples', []))}")
    print(f"run folder: {monitor.out}")
    return monitor


if __name__ == "__main__":
    main()
