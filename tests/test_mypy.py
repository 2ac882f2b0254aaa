"""mypy is clean on ccdflow/, with the project's configuration ([tool.mypy] in pyproject.toml).

CI runs only pytest, so the type check runs here. mypy's cache is the default .mypy_cache in
the repository (git-ignored), shared with a developer's own `mypy` runs: a warm check takes
about a second, a cold one (a fresh clone) about 20 s.

mypy runs in a child process rather than through ``mypy.api.run``: in-process, mypy keeps
its whole analysis (3.4 million objects, ~650 MB) alive after the call, so every later full
garbage collection of the test session walks it, and tearing it down at exit takes another
~30 s. The command line ends its process without that teardown.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "mypy", reason="mypy is not installed; it comes with the test extras: pip install -e '.[test]'"
)

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_is_clean_on_ccdflow():
    # From the repository root: an editable install's import hook is invisible to mypy, which
    # finds the package (the config's `packages`) and keeps its cache relative to the folder.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"mypy found problems (exit {done.returncode}):\n{done.stdout}{done.stderr}"
