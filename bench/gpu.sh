#!/usr/bin/env bash
# Every GPU test and benchmark in one visit to a machine with a CUDA GPU: under 8 minutes, with that
# machine's own python3 and PyTorch (it need not be ours), no network, and no ../shared beside it.
#
#   bench/gpu.sh --prepare    here, once, with network: fills bench/gpu-kit/ (git-ignored; it travels with
#                             the checkout, which counts towards the same 64 MiB): mnist.tar.xz, the MNIST
#                             files the benchmarks read, and wheels.tar.xz, the wheels of the small packages
#                             the GPU parts import besides torch, for CPython 3.10 to 3.13
#   bench/gpu.sh [OUT]        there, from the repository root: which modules $PYTHON (default python3)
#                             has, the missing ones installed from the kit; then the GPU tests, the
#                             throughput benchmark with every way side by side, a live run trained as the
#                             dashboard trains one, and a profile. Each part has its own time limit; one that
#                             cannot run says why. The log goes to OUT/gpu.txt (default bench/gpu-kit/out).
#   bench/gpu.sh --check      the module check alone
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-bench/gpu-kit}
[[ $KIT == /* ]] || KIT=$PWD/$KIT
PYTHON=${PYTHON:-python3}
# What the GPU parts import besides torch (tests/test_gpu.py and tests/test_engine.py with tests/conftest.py,
# bench/train_throughput.py, bench/gpu_live.py, and what they import from core/), as module[:distribution].
# tests/test_gpu_kit.py fails when one of them imports something new that is not here.
NEEDS=${GPU_NEEDS:-"numpy safetensors tqdm pytest sklearn:scikit-learn scipy streamlit torchvision PIL:pillow"}
# The ones --prepare puts in the kit: small. The checkout is 52 MiB of the 64 MiB that travel, which leaves
# no room for numpy (16 MB of wheels for each Python, 19 MB for four in one xz stream); GPU_CARRY can add it.
CARRY=${GPU_CARRY:-"safetensors tqdm pytest"}
# Why the others are not carried, and what a machine without them loses.
declare -A WHY=(
  [numpy]="not in the kit (see CARRY in bench/gpu.sh): nothing of the package imports without it"
  [sklearn]="not in the kit (scikit-learn and scipy are 44 to 47 MB of wheels for each Python): the tests on the digits fixture fail"
  [scipy]="not in the kit (see sklearn)"
  [streamlit]="not in the kit (117 MB of wheels for each Python, with pandas and pyarrow): tests/conftest.py imports it for the dashboard tests alone, so the GPU tests run with a stand-in that fails if used"
  [torchvision]="not in the kit (it must be built for this machine's torch): the throughput benchmark leaves out the tutorial way"
  [PIL]="not in the kit (torchvision's): the throughput benchmark leaves out the tutorial way"
)
PLATFORMS="--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64"

if [ "${1:-}" = "--prepare" ]; then
  here=python3
  [ -x .venv/bin/python ] && here=.venv/bin/python
  mkdir -p "$KIT"
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  download() {  # download PYTHON_VERSION PIP_ARGS...
    local version=$1; shift
    "$here" -m pip download -q --only-binary=:all: --implementation cp --python-version "$version" $PLATFORMS \
      -d "$stage/wheels" "$@" 2>>"$stage/pip.txt"
  }
  # Our versions where that Python has them (a constraint pip cannot meet: that package's newest for it).
  "$here" -m pip freeze --exclude-editable | grep -viE '^(torch|torchvision|triton|nvidia|cuda)' > "$stage/pins.txt"
  for version in ${KIT_PYTHONS:-3.10 3.11 3.12 3.13}; do
    # pip reads a dependency's environment marker with the Python it runs on, not --python-version:
    # pytest's backports for Pythons before 3.11 are named here.
    backports=
    [ "${version#3.}" -lt 11 ] && backports="exceptiongroup tomli"
    for dist in $CARRY $backports; do
      download "$version" -c "$stage/pins.txt" "$dist" || download "$version" "$dist" ||
        { echo "no wheel of $dist for Python $version"; tail -3 "$stage/pip.txt"; }
    done
  done
  # MNIST's four files, unpacked and in one xz stream: 9 MB rather than 11.6 MB gzipped.
  "$here" - "${VAELAB_DATA:-../shared/data}/MNIST/raw" "$KIT/mnist.tar.xz" <<'EOF' || exit 1
import gzip, io, lzma, sys, tarfile
from pathlib import Path

source, kit = Path(sys.argv[1]), sys.argv[2]
with lzma.open(kit, "w", preset=9 | lzma.PRESET_EXTREME) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        body = gzip.decompress((source / f"{name}.gz").read_bytes())
        member = tarfile.TarInfo(name)
        member.size = len(body)
        tar.addfile(member, io.BytesIO(body))
EOF
  # Never torch or CUDA's libraries: none of the carried packages needs them, and the machine has its own.
  rm -f "$stage"/wheels/{torch,torchvision,triton,nvidia_,cuda_}*.whl
  # A wheel is a zip of files deflated one by one. Stored uncompressed in one xz stream with a large window,
  # what the Pythons' wheels share is kept once (numpy's 25 MB OpenBLAS is the same file in each).
  "$here" - "$stage/wheels" "$KIT/wheels.tar.xz" <<'EOF' || exit 1
import io, lzma, sys, tarfile, zipfile
from pathlib import Path

source, kit = Path(sys.argv[1]), sys.argv[2]
window = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 192 << 20}]
with lzma.open(kit, "w", filters=window) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
    for wheel in sorted(source.glob("*.whl")):
        stored = io.BytesIO()
        with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                body = zin.read(info)
                info.compress_type = zipfile.ZIP_STORED
                zout.writestr(info, body)
        member = tarfile.TarInfo(wheel.name)
        member.size, member.mtime = stored.tell(), int(wheel.stat().st_mtime)
        stored.seek(0)
        tar.addfile(member, stored)
        print(f"{wheel.stat().st_size / 2**20:6.2f} MiB  {wheel.name}")
EOF
  rm -rf "$KIT/data"  # the kit's earlier form: MNIST gzipped
  # What travels: the checkout's files (tracked, and untracked but not ignored) and the kit.
  checkout=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
             awk '{n += $1} END {print n}')
  kit=$(du -sb "$KIT" | cut -f1)
  du -b "$KIT"/*.tar.xz
  awk -v c="$checkout" -v k="$kit" 'BEGIN {m = 2^20; printf "travels: the checkout %.1f MiB + the kit %.1f MiB = %.1f MiB of 64 MiB%s\n", c/m, k/m, (c+k)/m,
    (c + k > 64 * m) ? ": too much, it will not travel" : ""}'
  exit 0
fi

mode=visit
[ "${1:-}" = "--check" ] && { mode=check; shift; }
OUT=${1:-$KIT/out}
mkdir -p "$OUT"
LOG=$OUT/gpu.txt
# What this visit unpacks and installs, outside the kit (which is carried as it is) and that python's own
# packages (never touched); gone at the end.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-visit.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SITE=$WORK/site
# The package is not installed there: the repository root is on the path, and what the kit installs.
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
export VAELAB_DATA=$WORK/data VAELAB_OFFLINE=1 PYTHONUNBUFFERED=1

declare -A HAVE  # module -> present | kit | missing
unpack() {  # unpack ARCHIVE FOLDER, with that python (no xz needed)
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    tar.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
EOF
}

data() {  # MNIST from the kit into $VAELAB_DATA, gzipped again (the tutorial way reads .gz) but quickly
  [ -f "$KIT/mnist.tar.xz" ] || { echo "no $KIT/mnist.tar.xz: the parts on MNIST fail"; return; }
  "$PYTHON" - "$KIT/mnist.tar.xz" "$VAELAB_DATA/MNIST/raw" <<'EOF'
import gzip, sys, tarfile
from pathlib import Path

raw = Path(sys.argv[2])
raw.mkdir(parents=True)
with tarfile.open(sys.argv[1]) as tar:
    for member in tar:
        with gzip.open(raw / f"{Path(member.name).name}.gz", "wb", compresslevel=1) as f:
            f.write(tar.extractfile(member).read())
print(f"MNIST: {', '.join(sorted(p.name for p in raw.iterdir()))} from the kit")
EOF
}

version_of() {  # prints the module's version, or fails with the import's error in $WORK/error
  "$PYTHON" -c "import $1 as m; print(getattr(m, '__version__', ''))" 2>"$WORK/error"
}

check_modules() {
  local need m dist line missing=()
  echo "python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>&1)"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    echo "note: pyproject.toml asks for Python >= 3.11, for tomllib in core/sweep.py (sweep specs) alone;" \
         "the GPU parts do not import it"
  for need in $NEEDS; do
    m=${need%%:*}
    if line=$(version_of "$m"); then HAVE[$m]=present; echo "$m${line:+ $line}: present"; else missing+=("$need"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ -f "$KIT/wheels.tar.xz" ]; then
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
      echo "no pip for $PYTHON: nothing can be installed from the kit"
    else
      unpack "$KIT/wheels.tar.xz" "$WORK/wheels"
      # --target: never into that python's own packages, its torch untouched (pip then does not look at
      # what is installed there: a package's dependencies come along); --isolated: none of that machine's
      # pip settings apply.
      for need in "${missing[@]}"; do
        dist=${need#*:}
        ls "$WORK/wheels" | grep -qi "^${dist//-/_}-" || continue  # not in the kit: said below
        timeout 120 "$PYTHON" -m pip --isolated install -q --no-index --find-links "$WORK/wheels" --target "$SITE" \
          --no-warn-script-location "$dist" >>"$OUT/pip.txt" 2>&1 || echo "$dist: pip failed: $(tail -1 "$OUT/pip.txt")"
      done
    fi
  fi
  for need in "${missing[@]}"; do
    m=${need%%:*}
    if line=$(version_of "$m"); then
      HAVE[$m]=kit; echo "$m${line:+ $line}: installed from the kit"
    else
      HAVE[$m]=missing
      echo "$m: missing, ${WHY[$m]:-$(tail -1 "$WORK/error")}"
    fi
  done
}

part() {  # part SECONDS TITLE COMMAND...: run one part under its limit, its output into the log
  local limit=$1 title=$2; shift 2
  echo "== $title ($(date -u +%H:%M:%S), limit ${limit}s)" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== $title: exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

needs() {  # needs TITLE MODULE...: true when each module imports, else the part is skipped and says why
  local title=$1 m lacking=(); shift
  for m; do [ "${HAVE[$m]:-missing}" = missing ] && lacking+=("$m"); done
  [ ${#lacking[@]} -eq 0 ] && return 0
  echo "== $title: skipped, ${lacking[*]} missing here" | tee -a "$LOG"
  return 1
}

: > "$LOG"
: > "$OUT/pip.txt"
echo "== modules ($(date -u +%H:%M:%S))" | tee -a "$LOG"
check_modules > "$OUT/modules.txt" 2>&1  # not in a pipeline: HAVE is kept
tee -a "$LOG" < "$OUT/modules.txt"
[ "$mode" = check ] && exit 0
data 2>&1 | tee -a "$LOG"

part 20 "machine" bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; echo "cores: $(nproc)"
  "$1" -c "import torch; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"device:\",
    torch.cuda.get_device_name() if torch.cuda.is_available() else None)"' _ "$PYTHON"

if needs "GPU tests" pytest numpy safetensors; then
  stand_in=
  if [ "${HAVE[streamlit]:-missing}" = missing ]; then
    # tests/conftest.py imports streamlit's AppTest for the dashboard tests; none of these uses it.
    stand_in=$WORK/stand-in
    mkdir -p "$stand_in/streamlit/testing"
    : > "$stand_in/streamlit/__init__.py"
    : > "$stand_in/streamlit/testing/__init__.py"
    printf '%s\n' "class AppTest:  # a stand-in: streamlit is not installed here" \
      "    @classmethod" "    def from_file(cls, *args, **kwargs):" \
      "        raise RuntimeError('streamlit is not installed here')" > "$stand_in/streamlit/testing/v1.py"
  fi
  part 120 "GPU tests, and the engine's on this machine" \
    env PYTHONPATH="${stand_in:+$stand_in:}$PYTHONPATH" "$PYTHON" -m pytest -q -p no:cacheprovider --tb=short tests/test_gpu.py tests/test_engine.py
fi

ways=tutorial,numpy-loader,plain,engine,engine-live,engine-compile,engine-graphs
if [ "${HAVE[torchvision]:-missing}" = missing ] || [ "${HAVE[PIL]:-missing}" = missing ]; then
  ways=${ways#tutorial,}
fi
needs "training throughput" numpy safetensors &&
  part 180 "training throughput, every way side by side" \
    "$PYTHON" bench/train_throughput.py --device cuda --repeats 3 --ways "$ways"
needs "live run" numpy safetensors &&
  part 75 "a live run through the dashboard's pool" "$PYTHON" bench/gpu_live.py --device cuda --steps 5000 --timeout 60
needs "profile" numpy safetensors &&
  part 45 "where the engine's step spends its time" "$PYTHON" bench/train_throughput.py --device cuda --profile
echo "log: $LOG"
