"""Running the ``rlmem`` CLI in a subprocess, as a user would, and checking its error lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rlmem_cli(*args, cwd=ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rlmem ARGS`` from a checkout (no install needed); text output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rlmem", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    """Bad input: exit code 2, no traceback, one line on stderr that contains ``fragment``."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]
