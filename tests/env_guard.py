"""The suite leaves the user's environment as it found it (issue 15 item 7).

A snapshot is taken when the test session starts and compared when it ends: the installed
distributions and ccdflow entry points (a test that ``pip install``-ed the example plugin would
show here), the user's ccdflow folders (config, instruments, the default caldb), the variables
of the process environment that steer ccdflow, the working directory, and the files of the
checkout (a test writing beside the code). Any difference fails the run, naming it. conftest.py
wires it into pytest's session hooks.
"""

from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WATCHED_VARIABLES = ("CCDFLOW", "PYTHONPATH", "PATH", "HOME", "XDG_", "DASK", "PG", "DATABASE")


def _user_folders() -> list[Path]:
    home = Path.home()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return [config / "ccdflow", data / "ccdflow", home / ".ccdflow"]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _checkout_changes() -> list[str]:
    """Untracked files of the checkout (what a test wrote beside the code; edits made while the
    suite runs are the developer's, not looked at); empty outside git."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(line for line in out.splitlines() if line.startswith("??"))


def snapshot() -> dict[str, Any]:
    found = list(metadata.distributions())
    dists = sorted({(d.metadata["Name"] or "?", d.version) for d in found})
    points = sorted({(ep.group, ep.name, ep.value) for d in found for ep in d.entry_points
                     if ep.group.startswith("ccdflow")})
    return {
        "installed distributions": dists,
        "ccdflow entry points": points,
        **{f"files in {f}": _files(f) for f in _user_folders()},
        # variables that steer ccdflow or where things are found; a library's own variable set at
        # import (distributed sets PYTHONHASHSEED for its workers) dies with this process; these
        # would change what later tests see
        "environment": {k: v for k, v in os.environ.items() if k.startswith(WATCHED_VARIABLES)},
        "working directory": os.getcwd(),
        "untracked files in the checkout": _checkout_changes(),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per thing the session changed."""
    lines = []
    for key, old in before.items():
        new = after.get(key)
        if new == old:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            lines.append(f"{key}: {', '.join(changed[:10])}{' ...' if len(changed) > 10 else ''}")
        elif isinstance(old, list) and isinstance(new, list):
            added, gone = [x for x in new if x not in old], [x for x in old if x not in new]
            lines.append(f"{key}: added {added[:10]}, removed {gone[:10]}")
        else:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines
