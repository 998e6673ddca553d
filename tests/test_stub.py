"""The hand-written `_core.pyi` stays honest: mypy's stubtest against the built module."""

from __future__ import annotations

import subprocess
import sys


def test_stubtest_passes() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "provgraph._core"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
