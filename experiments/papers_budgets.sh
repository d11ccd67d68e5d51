#!/usr/bin/env bash
# The papers' own budgets, where a 2-core CPU can reach them: hours of training, run in the background at
# the lowest priority (nice 19) on one thread, so the machine stays usable. Every cell saves the point it
# would resume from every 2 minutes (experiments/models/, not committed) and each finished cell goes into
# its table's JSON at once, so after a stop the same command goes on where it stopped.
#
#     nohup experiments/papers_budgets.sh >> experiments/models/papers_budgets.log 2>&1 &
#
# Stages, in order (docs/results.md puts each beside the paper's number and our shorter run):
#   1. seed 002, Table 1: "VAE implementation" and "VAE tuned" at z = 3, 5, 10, 20, 200, 100 epochs (sec. 4)
#   2. seed 003: FC BVAE and FC CVAE on MNIST at its 300 epochs (sec. 6)
#   3. seed 004, Table 1: VAE, beta-VAE, mu-VAE#1 and #2 on MNIST and Fashion-MNIST at 5 epochs
main() {
    set -u
    cd "$(dirname "$0")/.." || exit 1
    mkdir -p experiments/models
    exec 9>experiments/models/.papers_budgets.lock
    flock -n 9 || { echo "papers_budgets.sh is already running"; exit 0; }
    export VAELAB_DATA="${VAELAB_DATA:-../shared/data}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    local py="nice -n 19 .venv/bin/python"
    echo "$(date -Is) start"
    $py experiments/improving_vaes_table1.py --name improving_vaes_table1_100ep --epochs 100 \
        --rows "VAE tuned,VAE implementation" || exit 1
    $py experiments/discrete_curves.py --name discrete_curves_300ep --epochs 300 --log-every 10 \
        --only "FC BVAE mnist,FC CVAE mnist" || exit 1
    $py experiments/mu_vae_probe.py --name mu_vae_probe_5ep --epochs 5 || exit 1
    echo "$(date -Is) all done"
}
main "$@"  # parsed whole before it runs, so editing this file does not disturb a running copy
exit
