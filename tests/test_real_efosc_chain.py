"""The EFOSC2 bias -> flat -> science chain on real raw frames through the efosc2 instrument."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import MasterRef, reduce_frame
from ccdflow.framework.engine.config import build
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitsio import read_product


@pytest.fixture(scope="module")
def efosc(tmp_path_factory):
    from tests.conftest import REAL_DATA

    folder = REAL_DATA / "efosc-ntt"
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is missing")
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    frames, rejected = scan_paths(sorted(folder.glob("*.fits.gz")), manager)
    assert not rejected
    config = build(manager, instrument="efosc2")
    by_type: dict[str, list] = {}
    for meta in frames:
        by_type.setdefault(meta.frame_type, []).append(meta)
    out = tmp_path_factory.mktemp("efosc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bias = build_master("bias", by_type["bias"], manager, config)
        flat = build_master("flat", by_type["flat"], manager, config, {"bias": bias})
    from ccdflow.framework.io.fitswrite import write_ccd

    write_ccd(bias, out / "bias.fits")
    write_ccd(flat, out / "flat.fits")
    return manager, config, by_type, out, bias, flat


def test_master_bias_is_trimmed_and_near_zero(efosc):
    _, _, by_type, _, bias, _ = efosc
    assert bias.shape == (1016, 1021)  # trim [2:1022,1:1016]
    # overscan removed the ~220 ADU level; what is left is structure, not offset
    assert abs(np.median(bias.data)) < 5.0
    assert bias.header["NCOMBINE"] == 5 and bias.header["CF_OVERS"] == "DONE"


def test_master_flat_is_normalised_with_real_structure(efosc):
    *_, flat = efosc
    assert np.median(flat.data) == pytest.approx(1.0, abs=1e-6)
    assert flat.header["CF_FILT"] == "g#782" and flat.header["NCOMBINE"] == 3
    centre = flat.data[300:700, 300:700]
    assert 0.005 < np.std(centre) < 0.2  # real vignetting/dust, not flat noise alone


def test_science_frame_reduces_with_provenance(efosc):
    manager, config, by_type, out, *_ = efosc
    masters = {"bias": MasterRef.load("bias", out / "bias.fits"),
               "flat": MasterRef.load("flat", out / "flat.fits")}
    meta = by_type["science"][0]
    product = out / "science.fits"
    reduce_frame(meta, manager, config, masters, product)
    ccd = read_product(product)
    assert ccd.shape == (1016, 1021)
    h = ccd.header
    assert (h["CF_OVERS"], h["CF_TRIM"], h["CF_BIAS"], h["CF_FLAT"]) == ("DONE",) * 4
    assert h["CF_BIASS"] == masters["bias"].checksum and h["CF_FLATF"] == "flat.fits"
    assert h["CF_INST"] == "efosc2"
    sky = np.median(ccd.data)
    assert 10 < sky < 5000  # a 180 s g-band sky, bias and overscan removed
    # flat-fielding removes the large-scale pattern (vignetting, dust) of the raw sky:
    # measured 2.5 % block-to-block scatter without the flat step, 1.2 % with it
    unflat = build(manager, instrument="efosc2", params=["flat.skip=true"])
    reduce_frame(meta, manager, unflat, masters, out / "unflat.fits")
    assert h["CF_FLAT"] == "DONE" and read_product(out / "unflat.fits").header["CF_FLAT"] == "SKIPPED"
    assert block_scatter(ccd.data) < 0.6 * block_scatter(read_product(out / "unflat.fits").data)


def block_scatter(data: np.ndarray, size: int = 48) -> float:
    """Relative scatter of block medians: large-scale structure, insensitive to stars."""
    n = min(data.shape) // size
    blocks = data[: n * size, : n * size].reshape(n, size, n, size).transpose(0, 2, 1, 3)
    medians = np.median(blocks.reshape(n, n, -1), axis=2)
    return float(np.std(medians) / np.median(medians))
