"""The ledger keys work on the configuration that shaped it: a parameter of a master's recipe
rebuilds that master (and so every product that used it), one of the science recipe only
re-reduces the science frames, and neither ever hands back the work of another configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccdflow.caldb import CalDB
from ccdflow.caldb.ledger import find_master, find_product
from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(64, 96), overscan=16, n_bias=5, n_dark=5, dark_exptimes=(60.0,),
                      dark_temperatures=(-20.0,), n_flat=5, filters=("V",), n_science=2, seed=3)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("ledger"), SPEC).raw_dir


def night(raw: Path, out: Path, caldb: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--caldb", str(caldb), "--workers", "1", "--json", *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_a_master_recipe_parameter_rebuilds_the_masters_and_their_products(raw, tmp_path):
    out, caldb = tmp_path / "out", tmp_path / "caldb.sqlite"
    first = night(raw, out, caldb)
    built = first["counts"]["masters"]["built"]
    assert night(raw, out, caldb)["counts"]["masters"] == {"up-to-date": built}
    changed = night(raw, out, caldb, "-p", "overscan.method=mean")
    # every master's recipe starts with overscan (the BPM is made from them, so it follows)
    assert changed["counts"]["masters"] == {"built": built}
    assert changed["counts"]["science"] == {"reduced": first["counts"]["science"]["reduced"]}


def test_the_ledger_never_returns_work_of_another_configuration(raw, tmp_path):
    out, caldb = tmp_path / "out", tmp_path / "caldb.sqlite"
    night(raw, out, caldb)
    db = CalDB(str(caldb))
    try:
        with db.sessions.read() as session:
            from sqlalchemy import select

            from ccdflow.caldb.models import Calibration, Product
            cal = session.scalars(select(Calibration).where(Calibration.type == "bias")).one()
            shas = [i.sha256 for i in cal.inputs]
            product = session.scalars(select(Product)).first()
            ids = {pc.type: pc.calibration_id for pc in product.calibrations}
            raw_sha, product_hash, path = product.raw_sha256, product.config_hash, product.path
            master_hash = cal.config_hash
        assert find_master(db, "bias", shas, master_hash)["id"] == cal.id
        assert find_master(db, "bias", shas, "0" * 16) is None
        assert find_product(db, raw_sha, product_hash, ids, path) is not None
        assert find_product(db, raw_sha, "0" * 16, ids, path) is None
    finally:
        db.close()
