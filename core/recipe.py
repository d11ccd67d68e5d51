"""A run as code: the `vaelab train` command and a short script on the engine that train it again,
with the same seed and so the same numbers on the CPU. A lesson or a demo becomes a file a student keeps.

    command(bundle)   vaelab train --dataset mnist --binarize dynamic --latent 8 ... --steps 2000
    script(bundle)    a Python file: the run config, the steps, any beta or learning-rate changes made mid-run
"""
from __future__ import annotations

import shlex
from dataclasses import fields, replace

from . import options
from .config import RunConfig
from .data import DataSpec
from .models import ModelConfig


def changed(value, default) -> list[tuple[str, object]]:
    """(field, value) of a dataclass's fields that differ from a default instance's."""
    return [(f.name, getattr(value, f.name)) for f in fields(value) if getattr(value, f.name) != getattr(default, f.name)]


def live_every(bundle) -> int:
    """The run's live-diagnostic period, read off its live rows' steps (they come every N steps)."""
    steps = [row["step"] for row in bundle.live]
    if len(steps) >= 2:
        return steps[1] - steps[0]
    return steps[0] if steps else 0


def first_settings(bundle) -> tuple[dict, float]:
    """The objective's settings and the learning rate the run started with (a beta or rate changed
    mid-run is in the checkpoint's settings at its last value)."""
    settings, lr = dict(bundle.config.settings), bundle.config.lr
    if bundle.history:
        first = bundle.history[0]
        if first.get("beta") is not None and "beta" in settings:
            settings["beta"] = first["beta"]
        lr = first.get("lr") or lr
    return settings, lr


def changes(bundle) -> dict[int, dict]:
    """{step: {"beta": b, "lr": r}}: what was changed before that step (1-based) was taken, from the history."""
    out, before = {}, None
    for row in bundle.history:
        now = {k: row[k] for k in ("beta", "lr") if row.get(k) is not None}
        if before is not None:
            diff = {k: v for k, v in now.items() if before.get(k) != v}
            if diff:
                out[row["step"]] = diff
        before = now
    return out


def command(bundle) -> str:
    """`vaelab train` with the flags that give this run's config (core.options), for its steps. Mid-run
    changes of beta or the rate have no flag: the script replays them."""
    settings, lr = first_settings(bundle)
    config = replace(bundle.config, settings=settings, lr=lr)
    return shlex.join(["vaelab", "train", *options.train_words(config, steps=bundle.step,
                                                                 live_every=live_every(bundle))])


def _call(cls, value, positional: str | None = None) -> str:
    """`Cls(field=value, ...)` with only the fields that differ from the defaults (positional first)."""
    default = cls(**({positional: getattr(value, positional)} if positional else {}))
    parts = [repr(getattr(value, positional))] if positional else []
    parts += [f"{name}={v!r}" for name, v in changed(value, default) if name not in options.DERIVED]
    return f"{cls.__name__}({', '.join(parts)})"


def script(bundle, name: str = "") -> str:
    """A Python script that trains this run again on the engine and saves it as checkpoints/NAME-again."""
    config = bundle.config
    settings, lr = first_settings(bundle)
    name = name or f"{config.data.short_name}-{config.objective}-z{config.model.latent_dim}"
    run_default = RunConfig()
    args = [f"    data={_call(DataSpec, config.data, 'name')},",
            f"    model={_call(ModelConfig, config.model)},",
            f"    objective={config.objective!r},",
            f"    settings={settings!r},"]
    for field in ("batch_size", "seed", "optimizer", "betas", "device", "compile"):
        if getattr(config, field) != getattr(run_default, field):
            args.append(f"    {field}={getattr(config, field)!r},")
    if lr != run_default.lr:
        args.append(f"    lr={lr!r},")
    schedule = changes(bundle)
    replay = ""
    if schedule:
        replay = ("\n# Changed while it trained (the dashboard's sliders): before step s, set what CHANGES[s] says.\n"
                  f"CHANGES = {schedule!r}\n")
    step_loop = ("    if trainer.step_count + 1 in CHANGES:\n"
                 "        change = CHANGES[trainer.step_count + 1]\n"
                 "        if \"beta\" in change:\n"
                 "            trainer.set_beta(change[\"beta\"])\n"
                 "        if \"lr\" in change:\n"
                 "            trainer.set_lr(change[\"lr\"])\n"
                 "    n = min([100, STEPS - trainer.step_count] + [s - 1 - trainer.step_count for s in CHANGES\n"
                 "                                                    if s - 1 > trainer.step_count])\n"
                 if schedule else "    n = min(100, STEPS - trainer.step_count)\n")
    threads = bundle.meta.get("threads")
    pin = (f"torch.set_num_threads({threads})  # as the original run: another count sums in another order, "
           f"and the numbers part after a few steps\n" if isinstance(threads, int) and threads > 0 else "")
    return f'''"""Train {name} again: {config.objective} on {config.data.short_name}, {bundle.step:,} steps from seed {config.seed}.

The same seed and settings as the original run, so on the CPU, with as many torch threads as it had, it
logs the same numbers. Run it from the VAE Lab folder:

    python {name}.py

The same run from the command line:

    {command(bundle)}
"""
{"import torch" + chr(10) + chr(10) if pin else ""}from core.config import RunConfig
from core.data import DataSpec
from core.engine import Trainer
from core.models import ModelConfig

{pin}config = RunConfig(
{chr(10).join(args)}
)
STEPS = {bundle.step}
LIVE_EVERY = {live_every(bundle)}  # held-out KL, active units and MI every this many steps
{replay}
trainer = Trainer(config, live_every=LIVE_EVERY)
while trainer.step_count < STEPS:
{step_loop}    row = trainer.step(n)[-1]
    print(f"step {{row['step']:6,}}  loss {{row['loss']:9.3f}}  recon {{row['recon']:9.3f}}  kl {{row['kl']:7.3f}}")
print("saved", trainer.save("checkpoints/{name}-again"))
'''
