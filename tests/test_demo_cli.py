"""`ccdflow demo`, the README's first command, as a user runs it (table and --json)."""

from __future__ import annotations

import json
import subprocess
import sys


def demo(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Run from ``tmp_path`` with the default (relative) output folder, as the README does."""
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "demo", "--size", "96", *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_demo_prints_masters_and_the_truth_comparison(tmp_path):
    out = demo(tmp_path).stdout
    assert "bpm" in out and "science vs. simulator truth" in out
    assert "resid / noise" in out
    products = sorted((tmp_path / "ccdflow-demo" / "reduced").glob("*.fits"))
    assert len(products) == 4 and not (tmp_path / "ccdflow-demo" / "ccdflow-demo").exists()


def test_demo_json_reports_every_science_frame_close_to_truth(tmp_path):
    result = json.loads(demo(tmp_path, "--json").stdout)
    assert {m["type"] for m in result["masters"]} == {"bias", "dark", "flat", "bpm"}
    assert len(result["reduced"]) == 4 and not result["rejected"]
    for frame in result["reduced"]:
        assert 0.9 < frame["residual_over_noise_std"] < 1.25
