"""The demo night's masters and products, byte for byte, as the code made them before a
restructuring: `ccdflow demo` with its defaults must keep giving exactly these files.

The checksums in tests/data/demo_products.sha256.json were written by `ccdflow demo --out D`
(defaults) at the end of the integrity work (issue 11), before the calibration types moved into
plugins (issue 12). A change that is meant to alter products (new physics, a new card) updates
the file in the same commit and says why; a refactoring never does.

The demo runs with ccdflow's own plugins only, as a belt: since products' CF_CHASH hashes only
the instrument and the steps of their own recipe, a third-party plugin installed beside ccdflow
no longer changes their bytes (checked with the example plugin installed: the same twelve
files). Re-recorded twice on purpose: masters' CF_CHASH comment shortened to fit its card (all
files, through the masters' identities), then products' CF_CHASH from the whole config to the
recipe's (the four reduced frames). Re-recorded for issue 13 (real cameras): the instrument model
gained fields (geometry, calibration policy, gain tables, frame-type sources, camera identity)
and generic no longer sets a gain or read noise, so every CF_CHASH and master identity changed;
masters are named with the camera (``..._sim0_ccdflow-sim_<id>``) and carry CF_CAM, CF_GSET and
CF_OFFS; their camera temperature keyword holds the inputs' mean. Every HDU's pixels of all
twelve files were compared with those of the session's starting commit (78a06cf): identical.
Re-recorded for issue 14 (science decisions), on purpose: masters are sigma-clipped means with
calibrated error planes (the calibrations' shared error included), darks are chosen by the noise
they add and scaled by the temperature law, UNCERT gains the overscan term and is made after
bias, MASK holds DQ bits, the BPM finds hot pixels against a local background and cosmic rays
are found beside flagged pixels; every file and master identity changed. Then the four reduced
frames again: their darks are scaled by the law the caldb's darks at -20 and -14 C measure;
and once more: they carry CF_FILT, the filter `stack` compares. Re-recorded for issue 15 (the
morning): the four reduced frames carry their quality figures (CF_Q... cards); SCI, UNCERT and
MASK pixels, CF_CHASH and every master are unchanged. Then again for issue 16: the cosmic-ray
step runs ccdflow's own L.A.Cosmic engine (bit-identical masks and cleaned pixels to
astroscrappy's) and says so in CF_CRENG; its `engine` parameter enters CF_CHASH. SCI, UNCERT and
MASK pixels and the masters unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from ccdflow.demo import run_demo
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.simulator import SimulationSpec

GOLDEN = Path(__file__).parent / "data" / "demo_products.sha256.json"


@pytest.fixture
def builtins_only():
    """ccdflow's own plugins for the test's duration: every other entry point blocked."""
    others = [ep.name for ep in entry_points(group="ccdflow.plugins")
              if not ep.value.startswith("ccdflow.")]
    before = os.environ.get("CCDFLOW_DISABLE_PLUGINS")
    os.environ["CCDFLOW_DISABLE_PLUGINS"] = ",".join(filter(None, [before, *others]))
    get_plugin_manager(reload=True)
    yield
    if before is None:
        del os.environ["CCDFLOW_DISABLE_PLUGINS"]
    else:
        os.environ["CCDFLOW_DISABLE_PLUGINS"] = before
    get_plugin_manager(reload=True)


def test_demo_products_are_bit_identical_to_the_recorded_ones(tmp_path, builtins_only):
    run_demo(tmp_path, SimulationSpec())
    made = {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted([*tmp_path.glob("masters/*.fits"), *tmp_path.glob("reduced/**/*.fits")])}
    expected = json.loads(GOLDEN.read_text())
    assert sorted(made) == sorted(expected), "different masters or products were made"
    differ = [name for name in expected if made[name] != expected[name]]
    assert not differ, f"bytes changed: {differ}"
