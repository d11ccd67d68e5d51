"""Train, diagnose and table every shipped checkpoint, with the project's own CLI.

    python checkpoints/regenerate.py                 # all of them (needs the full datasets: $VAELAB_DATA)
    python checkpoints/regenerate.py mnist-vae ...   # some of them
    python checkpoints/regenerate.py --table         # only rewrite the table in checkpoints/README.md
    python checkpoints/regenerate.py --record [...]  # measure again, weights untouched

Each checkpoint is `python -m core train ARGS --name NAME`, then `python -m core diagnose NAME --record`,
which stores every diagnostic and the ELBO of the first 1,000 test images in the sidecar. The table in
checkpoints/README.md is written from the sidecars. Every run is seeded, so a rerun on the same machine
and library versions gives the same weights: a rebuild says whether the weights' SHA-256 came out as before.
`--record` only re-runs the diagnose step (and notes the training set's size), for when the diagnostics
change and the weights do not.
"""
import argparse
import json
import os
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
    cli("train", *SHIPPED[name].split(), "--offline", "--out", "checkpoints", "--name", name)
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


def row(name: str) -> str:
    meta = json.loads((HERE / f"{name}.json").read_text())
    d = meta["diagnostics"]["results"]
    size = sum((HERE / f"{name}{ext}").stat().st_size for ext in (".safetensors", ".json")) / 2**20
    epochs = SHIPPED[name].split("--epochs ")[1].split()[0]
    mi = d["mutual-information"].get("mi")
    return (f"| `{name}` | `{SHIPPED[name]}` | {meta['data']['info']['name']} | {epochs} | "
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
            seconds[name] = record(name) if args.record else build(name)
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
        print(f"{'recorded' if args.record else 'built'} {len(seconds)} checkpoints in {sum(seconds.values()) / 60:.1f} min on "
              f"{os.cpu_count()} CPU cores")
    write_table()


if __name__ == "__main__":
    main()
