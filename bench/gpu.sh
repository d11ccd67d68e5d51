#!/usr/bin/env bash
# Every GPU test and benchmark in one visit to a machine with a CUDA GPU: under 8 minutes, with that
# machine's own python3 and PyTorch (it need not be ours), no network, and no ../shared beside it.
#
#   bench/gpu.sh --prepare    here, once: copy the MNIST files the benchmarks read into bench/gpu-kit/
#                             (git-ignored; about 12 MB), so the kit travels with the checkout
#   bench/gpu.sh [OUT]        there, from the repository root: the GPU tests, the throughput benchmark
#                             with every way side by side, and a profile; the log goes to OUT/gpu.txt
#                             (default bench/gpu-kit/out). Each part has its own time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-bench/gpu-kit}
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
  source=${VAELAB_DATA:-../shared/data}
  mkdir -p "$KIT/data/MNIST/raw"
  cp "$source"/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$KIT/data/MNIST/raw/" || exit 1
  du -sh "$KIT"
  exit 0
fi

OUT=${1:-$KIT/out}
mkdir -p "$OUT"
LOG=$OUT/gpu.txt
export VAELAB_DATA=$PWD/$KIT/data VAELAB_OFFLINE=1 PYTHONUNBUFFERED=1
part() {  # part SECONDS TITLE COMMAND...: run one part under its limit, its output into the log
  local limit=$1 title=$2; shift 2
  echo "== $title ($(date -u +%H:%M:%S), limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== $title: exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

: > "$LOG"
part 20 "machine" bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc; \
  $PYTHON -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())'"
part 150 "GPU tests, and the engine's on this machine" \
  "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_engine.py
part 200 "training throughput, every way side by side" \
  "$PYTHON" bench/train_throughput.py --device cuda --repeats 3 \
  --ways tutorial,numpy-loader,plain,engine,engine-live,engine-compile,engine-graphs
part 60 "where the engine's step spends its time" "$PYTHON" bench/train_throughput.py --device cuda --profile
echo "log: $LOG"
