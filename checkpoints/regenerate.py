"""Train, diagnose and table every shipped checkpoint, with the project's own CLI.

    python checkpoints/regenerate.py                 # all of them (needs the full datasets: $VAELAB_DATA)
    python checkpoints/regenerate.py mnist-vae ...   # some of them
    python checkpoints/regenerate.py --table         # only rewrite the table in checkpoints/README.md
    python checkpoints/regenerate.py --record [...]  # measure again, weights untouched
    python checkpoints/regenerate.py --snapshots [...]  # train again for the kept steps, diagnostics kept
    python checkpoints/regenerate.py --compact [...]    # no training: rewrite the files at today's budgets

Each checkpoint is `python -m core train ARGS --name NAME`, then `python -m core diagnose NAME --record`,
which stores every diagnostic and the ELBO of the first 1,000 test images in the sidecar. The table in
checkpoints/README.md is written from the sidecars. Every run is seeded, so a rerun on the same machine
and library versions gives the same weights: a rebuild says whether the weights' SHA-256 came out as before.
`--record` only re-runs the diagnose step (and notes the training set's size), for when the diagnostics
change and the weights do not. `--snapshots` trains each again with its snapshot budget and, when the last
weights come out bit for bit as they were, puts the new file (the same weights, plus the kept steps) in
place of the old one, its recorded diagnostics carried over: the snapshots change nothing they measured.
`--compact` trains nothing and needs no dataset: it rewrites each file as a save today would (kept steps
thinned to SNAPSHOT_MB and stored as float16, the history thinned), its last weights bit for bit and every
other sidecar field as recorded.

After anything it writes, the script prints the shipped total and exits with an error if it is over
SHIPPED_MB: every rebuild adds the files to git history, so they are held small.
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

# Small enough for the 2 MB budget per checkpoint (weights and sidecar), big enough for clear digits.
MNIST = "--dataset mnist --binarize dynamic --hidden 128 --latent 16 --epochs 5"
FASHION = "--dataset fashion-mnist --hidden 128 --latent 16 --epochs 5"
# 8 gated layers of 24 channels, z entering each as a bias alone: the decoder can draw the digits without z
PIXELCNN = ("--dataset digits --binarize dynamic --hidden 128 --latent 8 --pixelcnn-layers 8 --pixelcnn-channels 24 "
            "--pixelcnn-z bias --batch-size 64 --steps 1500")
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
    # the lesson "A strong decoder ignores z": one PixelCNN VAE on the digits, plainly and with three remedies
    "digits-pixelcnn-vae": f"{PIXELCNN} --objective vae",
    "digits-pixelcnn-aggressive": f"{PIXELCNN} --objective aggressive --mi-every 50",
    "digits-pixelcnn-bn-vae": f"{PIXELCNN} --objective bn-vae --gamma 0.5",
    "digits-pixelcnn-delta-vae": f"{PIXELCNN} --objective delta-vae --delta 0.25",
}
# Megabytes of earlier steps' weights each keeps (core.snapshots), at 0.4 MB a step (float16): the lesson
# "Watch a dimension collapse" scrubs mnist-kl-annealing-beta8 through its collapse (17 steps, 600, 1,400 and
# 2,000 among them), the first screen opens on mnist-vae (9 steps). Beside those, the 24 last weights (19 MB)
# and sidecars (7 MB) leave no room under SHIPPED_MB for even step 0 of the 22 others (9 MB): they keep
# their last weights only.
SNAPSHOT_MB = {"mnist-kl-annealing-beta8": 8, "mnist-vae": 4, "digits-pixelcnn-vae": 2}
SNAPSHOT_MB_OTHERS = 0
SHIPPED_MB = 44  # all the pairs together (checkpoints/sweeps/ apart); 40 before the strong-decoder lesson's four
MB = 2**20


def arguments(name: str) -> str:
    """Its training command's arguments: the run, its kept steps' budget, and no training state (2.1 MB of
    optimizer moments and batch order that a shipped model, branched rather than resumed, does not need)."""
    return f"{SHIPPED[name]} --snapshot-budget {SNAPSHOT_MB.get(name, SNAPSHOT_MB_OTHERS)} --save-every 0"


def command(name: str) -> str:
    """The command that trains it, as its sidecar records it."""
    return f"python -m core train {arguments(name)} --offline --out checkpoints --name {name} --overwrite"


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
    cli("train", *arguments(name).split(), "--offline", "--out", "checkpoints", "--name", name, "--overwrite")
    from core import checkpoint
    checkpoint.annotate(HERE / name, command=command(name))  # as a reader types it here, not as the CLI names itself
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
    checkpoint.annotate(HERE / name, command=command(name),
                        **{k: old_meta[k] for k in ("evaluation", "diagnostics") if k in old_meta})
    kept = checkpoint.read_sidecar(HERE / f"{name}.json")["snapshots"]["steps"]
    print(f"{name}: weights reproduced bit for bit; keeps steps {kept}")
    return time.perf_counter() - start


# The sidecar fields a save writes itself (the history thinned, the kept steps, the checksum); --compact
# passes every other one through as recorded, and keeps the creation time and versions of the original.
WRITTEN = ("format", "format_version", "history", "snapshots", "training", "weights_sha256", "created", "versions")


def compact(name: str, folder: Path = HERE, budget: float | None = None) -> float:
    """Rewrite one checkpoint without training, as a save with today's budget would write it: its kept steps
    thinned to their budget (core.snapshots.thin, counting float16 bytes) and stored as float16, its history
    thinned (core.checkpoint.thin_history); its last weights bit for bit and every other sidecar field as
    recorded. Written through core.checkpoint.save and annotate (atomic), then read back and checked.
    folder, budget: another checkpoint folder and megabytes (the tests')."""
    import torch
    from core import checkpoint, snapshots, weights
    start, path = time.perf_counter(), folder / name
    meta, tensors = checkpoint.read(path)
    bundle = checkpoint.load(path)
    final = weights.state_tensors(bundle.network, bundle.objective)
    budget = SNAPSHOT_MB.get(name, SNAPSHOT_MB_OTHERS) if budget is None else budget
    most = snapshots.limit(budget, snapshots.nbytes(snapshots.compact(final)))
    fields = meta.get("snapshots") or {}
    steps, every = (snapshots.thin(fields.get("steps", []), fields.get("every", snapshots.EVERY), most) if most
                    else ([], snapshots.EVERY))  # a run without a budget keeps nothing and never coarsens its grid
    kept = snapshots.unpack(tensors)
    earlier = {s: snapshots.compact(kept[s]) for s in steps if s != bundle.step}
    training = None
    if "training" in meta:
        training = ({k: v for k, v in tensors.items() if k.startswith("train.")}, meta["training"])
    checkpoint.save(path, bundle, training=training,
                    snapshots=(earlier, {"steps": steps, "every": every, "budget_mb": budget}),
                    **{k: v for k, v in meta.items() if k not in WRITTEN})
    checkpoint.annotate(path, created=meta["created"], versions=meta["versions"])

    new_meta, new = checkpoint.read(path)
    mine = [k for k in tensors if not k.startswith(snapshots.PREFIX)]
    problems = [k for k in mine
                if k not in new or new[k].dtype != tensors[k].dtype or not torch.equal(new[k], tensors[k])]
    problems += [k for k in new if not k.startswith(snapshots.PREFIX) and k not in tensors]
    problems += [f"field {k}" for k in meta
                 if k not in ("history", "snapshots", "weights_sha256") and new_meta.get(k) != meta[k]]
    problems += [f"field {k}" for k in new_meta if k not in meta]
    rows = {r["step"]: r for r in meta["history"]}
    problems += ["history" for r in new_meta["history"] if rows.get(r["step"]) != r]
    for s, t in snapshots.unpack(new).items():
        problems += [f"step {s} {k}" for k, v in t.items() if not torch.equal(v, snapshots.compact(kept[s])[k])]
    if problems:
        sys.exit(f"error: {path}: rewritten, but {', '.join(problems[:3])} changed; for a shipped one, "
                 f"`git checkout checkpoints/{name}.*` puts it back")
    print(f"{name}: last weights bit for bit; keeps steps {steps} of {fields.get('steps', [])} at {budget} MB; "
          f"history {len(meta['history']):,} -> {len(new_meta['history']):,} rows")
    return time.perf_counter() - start


def shipped_bytes() -> int:
    """What the shipped pairs take on disk (the sweep apart)."""
    return sum(p.stat().st_size for name in SHIPPED for p in (HERE / f"{name}.safetensors", HERE / f"{name}.json")
               if p.exists())


def check_total():
    """Print the shipped total; exit with one line if it is over SHIPPED_MB."""
    total = shipped_bytes()
    print(f"shipped checkpoints: {total:,} bytes, {total / MB:.1f} MB of {SHIPPED_MB} MB")
    if total > SHIPPED_MB * MB:
        sys.exit(f"error: the shipped checkpoints take {total / MB:.1f} MB, over their {SHIPPED_MB} MB; "
                 f"lower SNAPSHOT_MB and run --compact")


def row(name: str) -> str:
    meta = json.loads((HERE / f"{name}.json").read_text())
    d = meta["diagnostics"]["results"]
    size = sum((HERE / f"{name}{ext}").stat().st_size for ext in (".safetensors", ".json")) / 2**20
    epochs = SHIPPED[name].split("--epochs ")[1].split()[0] if "--epochs " in SHIPPED[name] else f"{meta['step']:,} steps"
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
    print(f"table of {len(rows)} checkpoints written to {readme}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"which to build (default: all {len(SHIPPED)})")
    parser.add_argument("--table", action="store_true", help="only rewrite the README's table")
    parser.add_argument("--record", action="store_true", help="only measure the diagnostics again, weights untouched")
    parser.add_argument("--snapshots", action="store_true",
                        help="train again for the kept steps; replace only where the weights reproduce")
    parser.add_argument("--compact", action="store_true",
                        help="no training: rewrite the files at today's budgets (kept steps float16, history thinned)")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(SHIPPED))
    if unknown:
        parser.error(f"unknown checkpoint {', '.join(unknown)}; known: {', '.join(SHIPPED)}")
    if args.compact:
        seconds = {name: compact(name) for name in args.names or SHIPPED}
        print(f"rewrote {len(seconds)} checkpoints in {sum(seconds.values()):.1f} s")
    elif not args.table:
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
    check_total()


if __name__ == "__main__":
    main()
