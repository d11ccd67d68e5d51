#!/usr/bin/env bash
# The papers' own budgets, where a 2-core CPU can reach them: hours of training, run in the background at
# the lowest priority (nice 19) on one thread, so the machine stays usable. Every cell saves the point it
# would resume from every 2 minutes (experiments/models/, not committed) and each finished cell goes into
# its table's JSON at once, so after a stop the same command goes on where it stopped.
#
#     nohup experiments/papers_budgets.sh >> experiments/models/papers_budgets.log 2>&1 &
#
# Each stage holds its own lock, so a second copy started beside the first (one a core) takes the next
# stage nobody holds and the two share the work.
#
# Stages, in order (docs/results.md puts each beside the paper's number and our shorter run):
#   1. seed 002, Table 1: "VAE implementation" and "VAE tuned" at z = 3, 5, 10, 20, 200, 100 epochs (sec. 4)
#   2. seed 003: FC BVAE and FC CVAE on MNIST at its 300 epochs (sec. 6)
#   3. seed 004, Table 1: VAE, beta-VAE, mu-VAE#1 and #2 on MNIST and Fashion-MNIST at 5 epochs
stage() {  # stage NAME COMMAND...: run it unless another copy holds its lock
    local name=$1 lock
    shift
    exec {lock}>"experiments/models/.budget-$name.lock"
    if flock -n "$lock"; then
        echo "$(date -Is) $name: start"
        nice -n 19 "$@" && echo "$(date -Is) $name: done"
    else
        echo "$(date -Is) $name: another copy runs it"
    fi
    exec {lock}>&-
}

main() {
    set -u
    cd "$(dirname "$0")/.." || exit 1
    mkdir -p experiments/models
    export VAELAB_DATA="${VAELAB_DATA:-../shared/data}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    local py=.venv/bin/python
    stage table1-100ep $py experiments/improving_vaes_table1.py --name improving_vaes_table1_100ep --epochs 100 \
        --rows "VAE tuned,VAE implementation"
    stage discrete-300ep $py experiments/discrete_curves.py --name discrete_curves_300ep --epochs 300 --log-every 10 \
        --only "FC BVAE mnist,FC CVAE mnist"
    stage mu-vae-5ep $py experiments/mu_vae_probe.py --name mu_vae_probe_5ep --epochs 5
}
main "$@"  # parsed whole before it runs, so editing this file does not disturb a running copy
exit
