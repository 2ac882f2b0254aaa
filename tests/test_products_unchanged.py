"""The demo night's masters and products, byte for byte, as the code made them before a
restructuring: `ccdflow demo` with its defaults must keep giving exactly these files.

The checksums in tests/data/demo_products.sha256.json were written by `ccdflow demo --out D`
(defaults) at the end of the integrity work (issue 11), before the calibration types moved into
plugins (issue 12). A change that is meant to alter products (new physics, a new card) updates
the file in the same commit and says why; a refactoring never does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ccdflow.demo import run_demo
from ccdflow.simulator import SimulationSpec

GOLDEN = Path(__file__).parent / "data" / "demo_products.sha256.json"


def test_demo_products_are_bit_identical_to_the_recorded_ones(tmp_path):
    run_demo(tmp_path, SimulationSpec())
    made = {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted([*tmp_path.glob("masters/*.fits"), *tmp_path.glob("reduced/**/*.fits")])}
    expected = json.loads(GOLDEN.read_text())
    assert sorted(made) == sorted(expected), "different masters or products were made"
    differ = [name for name in expected if made[name] != expected[name]]
    assert not differ, f"bytes changed: {differ}"
