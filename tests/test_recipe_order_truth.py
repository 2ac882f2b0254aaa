"""The default science recipe's order proved by its physics, not by reading the list.

A camera with strong dark current and a strongly non-uniform flat: dark subtraction must come
before flat division, or the product keeps ``dark * (1/flat - 1)``, a pattern that follows the
flat. The frames are written here with numpy (not ccdflow's simulator, which could share the
reduction's assumptions) and reduced by ``ccdflow night``, the path users run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

NY, NX = 96, 128
BIAS, DARK_RATE, SKY, EXPTIME, READ_NOISE = 300.0, 2.0, 400.0, 100.0, 3.0


def _flat_pattern() -> np.ndarray:
    """0.6 on the left to 1.4 on the right: the error of a wrong order is 10x the noise."""
    return np.broadcast_to(np.linspace(0.6, 1.4, NX, dtype=np.float64), (NY, NX)).copy()


def _write(path: Path, kind: str, exptime: float, signal: np.ndarray, rng: np.random.Generator,
           index: int) -> None:
    electrons = rng.poisson(np.clip(signal, 0, None)).astype(np.float64)
    data = BIAS + electrons + rng.normal(0.0, READ_NOISE, (NY, NX))
    header = fits.Header()
    header["IMAGETYP"] = kind
    header["EXPTIME"] = exptime
    header["DATE-OBS"] = f"2026-11-0{1 + index // 60}T0{index % 6}:{index % 60:02d}:00"
    header["CCD-TEMP"] = -20.0
    header["FILTER"] = "V"
    header["GAIN"] = 1.0
    header["RDNOISE"] = READ_NOISE
    header["SATURATE"] = 65535
    fits.PrimaryHDU(np.round(data).astype(np.uint16), header).writeto(path)


@pytest.fixture(scope="module")
def reduced(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("order")
    raw = root / "raw"
    raw.mkdir()
    rng = np.random.default_rng(14)
    flat, dark = _flat_pattern(), np.full((NY, NX), DARK_RATE * EXPTIME)
    index = 0
    for kind, n, exptime, signal in (("BIAS", 7, 0.0, np.zeros((NY, NX))),
                                     ("DARK", 7, EXPTIME, dark),
                                     ("FLAT", 7, 1.0, 20000.0 * flat),
                                     ("LIGHT", 2, EXPTIME, SKY * flat + dark)):
        for i in range(n):
            _write(raw / f"{kind.lower()}_{i:02d}.fits", kind, exptime, signal, rng, index)
            index += 1
    out = root / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--caldb", str(root / "caldb.sqlite"), "--instrument", "generic",
                           "--workers", "1", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads(proc.stdout)


def test_dark_is_subtracted_before_the_flat_divides(reduced):
    out, summary = reduced
    assert summary["counts"]["science"] == {"reduced": 2}
    for product in sorted((out / "reduced").glob("*.fits")):
        with fits.open(product) as hdul:
            sci = hdul["SCI"].data.astype(np.float64)
            err = hdul["UNCERT"].data.astype(np.float64)
            good = hdul["MASK"].data == 0
            for card in ("CF_DARK", "CF_FLAT"):
                assert hdul[0].header[card] == "DONE", card
        residual = sci - SKY  # gain 1: electrons are ADU; truth is the flat-fielded sky
        dim, bright = residual[:, : NX // 4], residual[:, -NX // 4:]  # flat 0.6-0.8 vs 1.2-1.4
        # A wrong order leaves +58..+33 e- on the dim side and -33..-57 e- on the bright side.
        for side in (dim, bright):
            stderr = float(np.sqrt(np.mean(err[:, : NX // 4] ** 2)) / np.sqrt(side.size))
            assert abs(float(side.mean())) < 5 * stderr + 0.5, (product.name, side.mean(), stderr)
        pull = (residual / err)[good]
        assert 0.9 < float(np.std(pull)) < 1.1, product.name


def test_a_frame_that_still_holds_its_pedestal_says_its_uncertainty_counts_it():
    """No overscan and no master bias before the uncertainty step: the Poisson term counts the
    pedestal, and the product says so instead of being silently too large."""
    from ccdflow.framework.io import cards
    from ccdflow.testing import make_ccd, make_meta, run_step

    meta = make_meta(gain=1.0, read_noise=3.0, shape=(40, 68))
    raw = make_ccd(level=1000.0)
    out = run_step("uncertainty", raw, meta=meta)
    assert cards.UPED.get(out.header) is True
    assert any("pedestal" in line for line in cards.assumptions(out.header))
    debiased = make_ccd(level=1000.0, header={"CF_BIAS": "DONE"})
    clean = run_step("uncertainty", debiased, meta=meta)
    assert cards.UPED.get(clean.header) is None and cards.assumptions(clean.header) == []
    np.testing.assert_allclose(out.uncertainty.array, np.sqrt(1000.0 + 9.0), rtol=1e-5)
