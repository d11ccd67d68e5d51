#!/usr/bin/env bash
# The text example (examples/text_vae.py) with each of its objectives, 3,000 steps each, watched by the
# monitor: does the GRU decoder collapse the code, and do free bits or aggressive training keep it alive?
# Each run folder goes to ~/vaelab-runs/text-OBJECTIVE; the last line of each run is kept in
# experiments/results/text_vae.log.
#
#     experiments/text_vae_objectives.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=experiments/results/text_vae.log
echo "# $(date -Is) examples/text_vae.py --steps 3000, one thread" > "$out"
for objective in vae free-bits aggressive; do
    start=$(date +%s)
    OMP_NUM_THREADS=1 .venv/bin/python examples/text_vae.py --objective "$objective" --steps 3000 2>&1 \
        | grep -E "^(vae|free-bits|aggressive):|MI stopped" >> "$out"
    echo "  ($(( $(date +%s) - start )) s)" >> "$out"
done
cat "$out"
