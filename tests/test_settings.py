"""The operator's settings are read in one place and mean the same everywhere."""
import re
from pathlib import Path

import pytest

from core import settings
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, offline", [("", False), ("0", False), ("no", False), ("1", True), ("true", True),
                                           ("YES", True)])
def test_offline_means_one_thing(text, offline):
    """VAELAB_OFFLINE=0 once meant online for `train` and offline for sweeps."""
    assert settings.get({"VAELAB_OFFLINE": text}).offline is offline


@pytest.mark.parametrize("name, text", [("VAELAB_OFFLINE", "maybe"), ("VAELAB_MAX_MEMORY_MB", "lots"),
                                        ("VAELAB_MAX_MEMORY_MB", "-5"), ("VAELAB_GRACE", "0"),
                                        ("VAELAB_MAX_RUNS", "1.5"), ("VAELAB_TRAINING_NICE", "20"),
                                        ("VAELAB_TRAINING_NICE", "-1"), ("VAELAB_TRAINING_NICE", "²")])
def test_a_setting_that_cannot_be_read_is_one_line_naming_it(name, text):
    with pytest.raises(ConfigError, match=name):
        settings.get({name: text})


def test_paths_and_numbers_are_typed_and_defaults_left_to_their_modules(tmp_path):
    given = settings.get({"VAELAB_DATA_ROOTS": f"{tmp_path}:{tmp_path / 'b'}", "VAELAB_GRACE": "2.5",
                          "VAELAB_MAX_RUNS": "3"})
    assert given.data_roots == (tmp_path, tmp_path / "b") and given.grace == 2.5 and given.max_runs == 3
    assert given.max_memory_mb is None and given.save_every is None  # core.limits' and core.pool's defaults
    assert settings.get({"VAELAB_TRAINING_NICE": "0"}).training_nice == 0  # 0 is a value: the server's priority
    assert settings.get({}).training_nice is None


def test_no_other_module_reads_a_vaelab_variable():
    readers = []
    for path in [*(ROOT / "core").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py")]:
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']VAELAB_", line):
                readers.append(f"{path.relative_to(ROOT)}:{n}")
    assert not readers, readers
