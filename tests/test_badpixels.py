"""Bad-pixel masks: hot from a master dark, low from a master flat, unstable from a stack,
against the simulator's truth bad-pixel map and on arrays with planted defects."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std

from ccdflow.framework.builders.badpixels import (
    HOT,
    LOW,
    UNSTABLE,
    BpmThresholds,
    build_bpm,
    unstable_pixels,
    write_bpm,
)
from ccdflow.framework.builders.masters import build_master, preprocess_into
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.spool import Spool
from ccdflow.simulator import SimulationSpec, simulate_night

EXPTIME = 300.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Long darks so hot pixels (10-100x the median rate) stand far above the noise."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    spec = SimulationSpec(shape=(128, 128), n_bias=5, n_dark=6, dark_exptimes=(EXPTIME,),
                          dark_temperatures=(-20.0,), n_flat=5, filters=("V",), n_science=0, seed=3)
    night = simulate_night(tmp_path_factory.mktemp("bpm"), spec)
    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, _ = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    groups = {g[0].frame_type: g for g in group_frames(frames).values()}
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    flat = build_master("flat", groups["flat"], manager, config, {"bias": bias, "dark": dark})
    return night, manager, config, groups, bias, dark, flat


def test_hot_and_dead_pixels_recover_truth_with_few_false_flags(sim, tmp_path):
    night, _, _, groups, _, dark, flat = sim
    bpm, header = build_bpm(dark.header, dark.data, flat.header, flat.data,
                            dark_path=groups["dark"][0].path, flat_path=groups["flat"][0].path)
    truth = fits.getdata(night.truth_dir / "bpm.fits")
    bad = truth != 0
    recovered = np.mean(bpm[bad] != 0)
    false_rate = np.mean(bpm[~bad] != 0)
    assert recovered >= 0.95 and false_rate < 0.001, (recovered, false_rate)
    assert np.all(bpm[(truth & 1) > 0] & HOT) or np.mean(bpm[(truth & 1) > 0] & HOT > 0) > 0.95
    assert np.mean(bpm[(truth & 2) > 0] & LOW > 0) > 0.95

    # Physically detectable: a truth hot pixel whose charge (ADU) clears the threshold used.
    rate_adu = fits.getdata(night.truth_dir / "dark_rate.fits") / night.gain
    level = dark.data / EXPTIME
    threshold = np.median(level) + 10 * mad_std(level)
    detectable = np.mean(rate_adu[(truth & 1) > 0] > threshold)
    assert detectable == 1.0  # every simulated hot pixel (>= 10x the median rate) is detectable here

    assert header["CF_MTYPE"] == "bpm" and header["CF_NHOT"] == np.count_nonzero(bpm & HOT)
    assert header["CF_HOTSG"] == 10.0 and "CF_DARKS" in header and "CF_FLATS" in header
    assert any("bit value 4" in str(c) for c in header["COMMENT"])
    path = tmp_path / "bpm.fits"
    write_bpm(bpm, header, path)
    with fits.open(path) as hdul:
        assert hdul["SCI"].data.dtype == np.uint8
        assert np.array_equal(hdul["SCI"].data, bpm)


def test_bpm_is_ingested_by_the_caldb(sim, tmp_path):
    from ccdflow.caldb import CalDB

    _, manager, _, groups, _, dark, flat = sim
    bpm, header = build_bpm(dark.header, dark.data, flat.header, flat.data,
                            dark_path=groups["dark"][0].path, flat_path=groups["flat"][0].path)
    write_bpm(bpm, header, tmp_path / "bpm.fits")
    db = CalDB.create(tmp_path / "caldb.sqlite")
    try:
        added = db.add(tmp_path / "bpm.fits", manager)
        record, _ = db.best("bpm", groups["dark"][0], manager.instrument("generic").caldb["bpm"])
    finally:
        db.close()
    assert record["id"] == added.id and record["type"] == "bpm"
    assert record["stats"]["fraction_masked"] == pytest.approx(np.mean(bpm != 0))


def test_absolute_hot_rate_threshold():
    rate = np.full((20, 20), 0.01, np.float32)
    rate[3, 4] = 0.5
    rate[5, 5] = 0.05  # 5x the median: hot by an absolute 0.04 ADU/s, not by 10 sigma of 0
    header = fits.Header({"CF_MTYPE": "dark", "CF_EXPT": 100.0, "CF_INST": "generic", "NCOMBINE": 5})
    bpm, _ = build_bpm(header, rate * 100, thresholds=BpmThresholds(hot_sigma=1e6, hot_rate=0.04))
    assert set(zip(*np.nonzero(bpm), strict=True)) == {(3, 4), (5, 5)}


def test_unstable_pixels_found_in_a_stack_and_shot_noise_is_not_instability():
    rng = np.random.default_rng(1)
    n, shape = 8, (64, 64)
    level = np.linspace(50.0, 2000.0, shape[0] * shape[1]).reshape(shape)  # a range of levels
    level[10, 10] = 5000.0  # a hot pixel: larger shot noise, but exactly as predicted
    frames = [rng.poisson(level).astype(np.float32) + rng.normal(0, 5, shape).astype(np.float32)
              for _ in range(n)]
    for i, f in enumerate(frames):  # random telegraph pixel: jumps by 1000 ADU half the time
        f[30, 40] += 1000.0 * (i % 2)
        f[50, 7] += 800.0 * (i % 3 == 0)
    frames[2][20, 20] += 5000.0  # a cosmic ray in one frame is not instability
    unstable, model = unstable_pixels(frames, factor=5.0)
    assert set(zip(*np.nonzero(unstable), strict=True)) == {(30, 40), (50, 7)}
    # Poisson: variance = level, times the variance kept by dropping each pixel's extremes
    assert 0.3 < model["var_slope"] < 1.05


def test_unstable_bits_from_a_preprocessed_dark_stack_add_few_flags(sim):
    night, manager, config, groups, bias, dark, flat = sim
    metas = groups["dark"]
    with Spool(len(metas)) as spool:
        preprocess_into(spool, "dark", metas, manager, config, {"bias": bias})
        bpm, header = build_bpm(dark.header, dark.data, stack=(spool.frames, spool.masks, None),
                                dark_path=metas[0].path, stack_paths=[m.path for m in metas])
    truth = fits.getdata(night.truth_dir / "bpm.fits")
    assert np.mean((bpm & UNSTABLE > 0) & (truth == 0)) < 0.001  # the simulator has no RTS pixels
    assert header["NCOMBINE"] == len(metas) and header["CF_I0001"]


def test_refusals(sim):
    _, _, _, _, bias, dark, flat = sim
    with pytest.raises(UnprocessableInputError, match="needs a master dark, a master flat"):
        build_bpm()
    with pytest.raises(UnprocessableInputError, match="not a master dark.*CF_MTYPE.*'bias'"):
        build_bpm(bias.header, bias.data, dark_path="bias.fits")
    other = flat.header.copy()
    other["CF_BIN"] = "2x2"
    with pytest.raises(UnprocessableInputError, match="disagree on CF_BIN"):
        build_bpm(dark.header, dark.data, other, flat.data)
    with pytest.raises(UnprocessableInputError, match="at least 6 frames"):
        unstable_pixels([dark.data] * 5)
