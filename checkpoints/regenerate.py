"""Train, diagnose and table every shipped checkpoint, with the project's own CLI.

    python checkpoints/regenerate.py                 # all of them (needs the full datasets: $VAELAB_DATA)
    python checkpoints/regenerate.py mnist-vae ...   # some of them
    python checkpoints/regenerate.py --table         # only rewrite the table in checkpoints/README.md
    python checkpoints/regenerate.py --record [...]  # measure again, weights untouched
    python checkpoints/regenerate.py --snapshots [...]  # train again for the kept steps, diagnostics kept

Each checkpoint is `python -m core train ARGS --name NAME`, then `python -m core diagnose NAME --record`,
which stores every diagnostic and the ELBO of the first 1,000 test images in the sidecar. The table in
checkpoints/README.md is written from the sidecars. Every run is seeded, so a rerun on the same machine
and library versions gives the same weights: a rebuild says whether the weights' SHA-256 came out as before.
`--record` only re-runs the diagnose step (and notes the training set's size), for when the diagnostics
change and the weights do not. `--snapshots` trains each again with its snapshot budget and, when the last
weights come out bit for bit as they were, puts the new file (the same weights, plus the kept steps) in
place of the old one, its recorded diagnostics carried over: the snapshots change nothing they measured.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# Small enough for the 2 MB budget per checkpoint (weights and sidecar), big enough for clear digits.
MNIST = "--dataset mnist --binarize dynamic --hidden 128 --latent 16 --epochs 5"
FASHION = "--dataset fashion-mnist --hidden 128 --latent 16 --epochs 5"
SHIPPED = {
    "mnist-vae": f"{MNIST} --objective vae",
    "mnist-beta4": f"{MNIST} --objective beta-vae --beta 4",
    "mnist-beta8": f"{MNIST} --objective beta-vae --beta 8",
    "mnist-kl-annealing-beta8": f"{MNIST} --objective kl-annealing --beta 8 --schedule linear --anneal-steps 1000",
    "mnist-free-bits-beta8": f"{MNIST} --objective free-bits --beta 8",
    "mnist-iwae": f"{MNIST} --objective iwae --k 5",
    "mnist-dvae": f"{MNIST} --objective dvae",
    "mnist-cvae": f"{MNIST} --objective cvae",
    "mnist-mu-vae-1": f"{MNIST} --objective mu-vae --clip 3",
    "mnist-mu-vae-2": f"{MNIST} --objective mu-vae --clip 6",
    "mnist-mmd": f"{MNIST} --objective mmd-vae",
    "mnist-bernoulli": f"{MNIST} --objective discrete-is --latent-type bernoulli",
    "mnist-categorical": f"{MNIST} --objective discrete-is --latent-type categorical",
    "mnist-reinforce-loo": f"{MNIST} --objective reinforce-loo --latent-type bernoulli",
    "mnist-gumbel-softmax": f"{MNIST} --objective gumbel-softmax --latent-type bernoulli",
    "mnist-vlae": f"{MNIST} --objective vlae",
    "mnist-sa-vae": f"{MNIST} --objective sa-vae",
    "mnist-hf": f"{MNIST} --objective householder",
    "mnist-iaf": f"{MNIST} --objective iaf",
    "mnist-vae-z2": f"{MNIST.replace('--latent 16', '--latent 2')} --objective vae",
    "mnist-mu-vae-z2": f"{MNIST.replace('--latent 16', '--latent 2')} --objective mu-vae --clip 3",
    "fashion-vae": f"{FASHION} --objective vae",
    "fashion-mu-vae": f"{FASHION} --objective mu-vae --clip 3",
    "frey-vae-z2": "--dataset frey --hidden 128 --latent 2 --gaussian-mean sigmoid --epochs 100 --objective vae",
}
# Megabytes of earlier steps' weights each keeps (core.snapshots): the lesson "Watch a dimension collapse"
# scrubs mnist-kl-annealing-beta8 through its collapse, the first screen opens on mnist-vae; the others keep
# a few steps (0, 200, 500, 1,600 of a 2,345-step run) for the step slider, at 0.83 MB a step.
SNAPSHOT_MB = {"mnist-kl-annealing-beta8": 16, "mnist-vae": 8}
SNAPSHOT_MB_OTHERS = 4


def arguments(name: str) -> str:
    """Its training command's arguments: the run, its kept steps' budget, and no training state (2.1 MB of
    optimizer moments and batch order that a shipped model, branched rather than resumed, does not need)."""
    return f"{SHIPPED[name]} --snapshot-budget {SNAPSHOT_MB.get(name, SNAPSHOT_MB_OTHERS)} --save-every 0"


TABLE_START, TABLE_END = "<!-- table: written by regenerate.py -->", "<!-- end of table -->"


def cli(*args: str):
    """One `python -m core` command from the project root, its output shown as it runs."""
    subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, check=True)


def weights_sha(name: str) -> str | None:
    path = HERE / f"{name}.json"
    return json.loads(path.read_text())["weights_sha256"] if path.exists() else None


def build(name: str) -> float:
    """Train and record one checkpoint; returns the seconds it took."""
    start, before = time.perf_counter(), weights_sha(name)
    cli("train", *arguments(name).split(), "--offline", "--out", "checkpoints", "--name", name)
    cli("diagnose", f"checkpoints/{name}", "--record", "--offline")
    if before:
        same = weights_sha(name) == before
        print(f"{name}: weights {'reproduced bit for bit' if same else 'changed'} (sha256 {weights_sha(name)[:12]})")
    return time.perf_counter() - start


def record(name: str) -> float:
    """Measure one checkpoint's diagnostics again and note its training set's size; the weights stay."""
    from core import checkpoint
    from core import data as datasets
    start = time.perf_counter()
    bundle = checkpoint.load(HERE / name)
    n_train = len(datasets.load(bundle.config.data, download=False).train_x)
    checkpoint.annotate(HERE / name, data=bundle.meta["data"] | {"n_train": n_train})
    cli("diagnose", f"checkpoints/{name}", "--record", "--offline")
    return time.perf_counter() - start


def with_snapshots(name: str) -> float:
    """Train one checkpoint again with its kept steps; replace it only if its last weights are the same."""
    import torch
    from core import checkpoint
    start, scratch = time.perf_counter(), HERE / ".regenerate"
    cli("train", *arguments(name).split(), "--offline", "--out", str(scratch), "--name", name)
    old_meta, old = checkpoint.read(HERE / name)
    new_meta, new = checkpoint.read(scratch / name)
    mine = [k for k in old if k.startswith(("model.", "objective."))]
    if sorted(mine) != sorted(k for k in new if k.startswith(("model.", "objective."))) or \
            not all(torch.equal(old[k], new[k]) for k in mine):
        print(f"{name}: the weights changed; left as it was (rebuild it whole without --snapshots)")
        return time.perf_counter() - start
    for ext in (".safetensors", ".json"):
        shutil.move(scratch / f"{name}{ext}", HERE / f"{name}{ext}")
    command = f"python -m core train {arguments(name)} --offline --out checkpoints --name {name}"
    checkpoint.annotate(HERE / name, command=command,
                        **{k: old_meta[k] for k in ("evaluation", "diagnostics") if k in old_meta})
    kept = checkpoint.read_sidecar(HERE / f"{name}.json")["snapshots"]["steps"]
    print(f"{name}: weights reproduced bit for bit; keeps steps {kept}")
    return time.perf_counter() - start


def row(name: str) -> str:
    meta = json.loads((HERE / f"{name}.json").read_text())
    d = meta["diagnostics"]["results"]
    size = sum((HERE / f"{name}{ext}").stat().st_size for ext in (".safetensors", ".json")) / 2**20
    epochs = SHIPPED[name].split("--epochs ")[1].split()[0]
    mi = d["mutual-information"].get("mi")
    return (f"| `{name}` | `{arguments(name)}` | {meta['data']['info']['name']} | {epochs} | "
            f"{d['iwae']['elbo']:.1f} | {-d['iwae']['iwae']:.1f} | {d['active-units']['count']} / "
            f"{meta['config']['model']['latent_dim']} | {'–' if mi is None else f'{mi:.2f}'} | {size:.2f} |")


def write_table():
    header = ("| checkpoint | `python -m core train` arguments | dataset | epochs | test ELBO | IWAE NLL (k=100) "
              "| AU | MI (nats) | MB |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    rows = [row(name) for name in SHIPPED if (HERE / f"{name}.json").exists()]
    readme = HERE / "README.md"
    text = readme.read_text()
    before, rest = text.split(TABLE_START)
    after = rest.split(TABLE_END)[1]
    readme.write_text(f"{before}{TABLE_START}\n{header}" + "\n".join(rows) + f"\n{TABLE_END}{after}")
    total = sum(p.stat().st_size for name in SHIPPED for p in HERE.glob(f"{name}.*") if p.suffix != ".py")
    print(f"table of {len(rows)} checkpoints written to {readme}; {total / 2**20:.1f} MB in all")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"which to build (default: all {len(SHIPPED)})")
    parser.add_argument("--table", action="store_true", help="only rewrite the README's table")
    parser.add_argument("--record", action="store_true", help="only measure the diagnostics again, weights untouched")
    parser.add_argument("--snapshots", action="store_true",
                        help="train again for the kept steps; replace only where the weights reproduce")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SHIPPED))
    if unknown:
        parser.error(f"unknown checkpoint {', '.join(unknown)}; known: {', '.join(SHIPPED)}")
    if not args.table:
        from core import data as datasets
        for name in ("mnist", "fashion-mnist", "frey"):  # shipped models are trained on the full datasets only
            info = datasets.load(datasets.DataSpec(name), download=False).info
            if info.note:
                sys.exit(f"error: {name}: {info.note}; point $VAELAB_DATA at the full dataset")
        seconds = {}
        for name in args.names or SHIPPED:
            seconds[name] = record(name) if args.record else with_snapshots(name) if args.snapshots else build(name)
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
        print(f"{'recorded' if args.record else 'built'} {len(seconds)} checkpoints in {sum(seconds.values()) / 60:.1f} min on "
              f"{os.cpu_count()} CPU cores")
    write_table()


if __name__ == "__main__":
    main()
