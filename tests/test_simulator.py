"""The simulator writes what the spec asks for, reproducibly, with the statistics its truth says."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import numpy as np
import pytest
from astropy.io import fits
from pydantic import ValidationError
from scipy import ndimage

from ccdflow.simulator import SimulatedNight, SimulationSpec, simulate_night

NY, NX, OSCAN = 128, 128, 16
SPEC = dict(shape=(NY, NX), overscan=OSCAN, n_bias=4, n_dark=3, dark_exptimes=(30.0, 300.0),
            dark_temperatures=(-20.0, -14.0), n_flat=3, filters=("V", "R"), n_science=2, seed=7)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> SimulatedNight:
    return simulate_night(tmp_path_factory.mktemp("sim"), SimulationSpec(**SPEC))


def truth(night: SimulatedNight, name: str) -> np.ndarray:
    return fits.getdata(night.truth_dir / name).astype(np.float64)


def raw(frame) -> np.ndarray:
    return fits.getdata(frame.path).astype(np.float64)


def electrons(night: SimulatedNight, frame) -> np.ndarray:
    """Data area in e- after removing the true bias, the frame's offset and the dark current."""
    signal = (raw(frame) - truth(night, "bias.fits") - frame.bias_offset)[:, :NX] * night.gain
    dark = truth(night, "dark_rate.fits") * 2.0 ** (
        (frame.temperature - night.ref_temperature) / night.doubling_temperature)
    return signal - dark * frame.exptime


def test_spec_defaults_forbid_extras_and_document_every_field():
    spec = SimulationSpec()
    assert spec.shape == (256, 256) and spec.overscan == 32 and spec.nights == 1
    assert all(field.description for field in SimulationSpec.model_fields.values())
    with pytest.raises(ValidationError, match="n_biases"):
        SimulationSpec(n_biases=3)
    with pytest.raises(ValidationError, match="saturation"):
        SimulationSpec(bias_level=60000.0)


def test_default_night_is_fast(tmp_path):
    t0 = time.perf_counter()
    simulate_night(tmp_path, SimulationSpec())
    assert time.perf_counter() - t0 < 2.0


def test_files_and_counts_follow_the_spec(night):
    counts = {kind: len(night.select(kind)) for kind in ("bias", "dark", "flat", "science")}
    assert counts == {"bias": 4, "dark": 3 * 2 * 2, "flat": 3 * 2, "science": 2 * 2}
    assert night.raw_dir == night.truth_dir.parent / "night1" / "raw"
    assert sorted(p.name for p in night.raw_dir.glob("*.fits")) == \
        sorted(f.path.name for f in night.frames)
    for name in ("bias.fits", "dark_rate.fits", "bpm.fits", "flat_V.fits", "flat_R.fits"):
        assert (night.truth_dir / name).exists(), name
    for frame in night.select("science"):
        for prefix in ("sky", "cr", "sat"):
            assert (night.truth_dir / f"{prefix}_{frame.name}.fits").exists()
    assert truth(night, "bias.fits").shape == (NY, NX + OSCAN)
    assert truth(night, "flat_V.fits").shape == (NY, NX)
    assert np.median(truth(night, "flat_V.fits")) == pytest.approx(1.0, abs=1e-5)
    assert fits.getdata(night.truth_dir / "bpm.fits").dtype == np.uint8
    summary = json.loads((night.truth_dir / "truth.json").read_text())
    assert summary["gain_e_per_adu"] == night.gain == 1.5
    assert summary["read_noise_adu"] == pytest.approx(5.0 / 1.5)
    assert len(summary["frames"]) == len(night.frames)


def test_headers_use_generic_keywords(night):
    imagetyp = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT", "science": "LIGHT"}
    previous = None
    for frame in night.frames:
        with fits.open(frame.path, do_not_scale_image_data=True) as hdul:
            header = hdul[0].header
            assert header["BITPIX"] == 16 and header["BZERO"] == 32768
            assert hdul[0].data.shape == (NY, NX + OSCAN)
        assert header["IMAGETYP"] == imagetyp[frame.frame_type]
        assert header["EXPTIME"] == frame.exptime
        assert ("FILTER" in header) == (frame.frame_type in ("flat", "science"))
        set_points = SPEC["dark_temperatures"] if frame.frame_type == "dark" else (-20.0,)
        assert min(abs(header["CCD-TEMP"] - t) for t in set_points) <= 0.1
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", header["DATE-OBS"])
        assert header["BIASSEC"] == f"[{NX + 1}:{NX + OSCAN},1:{NY}]"
        assert header["TRIMSEC"] == f"[1:{NX},1:{NY}]"
        assert (header["XBINNING"], header["YBINNING"]) == (1, 1)
        assert (header["INSTRUME"], header["DETECTOR"]) == ("ccdflow-sim", "sim0")
        assert (header["GAIN"], header["RDNOISE"], header["SATURATE"]) == (1.5, 5.0, 60000.0)
        if previous is not None:
            step = timedelta(seconds=previous.exptime + night.spec.readout_time)
            assert frame.date_obs == previous.date_obs + step
        previous = frame


def small_spec(**changes) -> SimulationSpec:
    values = dict(shape=(48, 64), overscan=8, n_bias=2, n_dark=1, dark_exptimes=(60.0,),
                  n_flat=1, filters=("V",), n_science=1, seed=11)
    return SimulationSpec(**{**values, **changes})


def pixels(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): fits.getdata(p).tobytes() for p in root.rglob("*.fits")}


def test_same_seed_same_pixels_whatever_the_threads(tmp_path):
    a = pixels(simulate_night(tmp_path / "a", small_spec(), workers=1).truth_dir.parent)
    b = pixels(simulate_night(tmp_path / "b", small_spec(), workers=3).truth_dir.parent)
    assert a.keys() == b.keys() and a == b
    c = pixels(simulate_night(tmp_path / "c", small_spec(seed=12)).truth_dir.parent)
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("night1"))


def test_refuses_to_mix_with_foreign_frames(tmp_path):
    (tmp_path / "night1" / "raw").mkdir(parents=True)
    (tmp_path / "night1" / "raw" / "other.fits").write_bytes(b"")
    with pytest.raises(FileExistsError, match="other.fits"):
        simulate_night(tmp_path, small_spec())
    assert not (tmp_path / "truth").exists()  # checked before anything was written


def test_each_night_has_its_own_set_and_drifts(tmp_path):
    sim = simulate_night(tmp_path, small_spec(nights=2, bias_drift=5.0))
    assert [d.name for d in (p.parent for p in sim.raw_dirs)] == ["night1", "night2"]
    first, second = (sim.select("bias", night=k)[0] for k in (1, 2))
    assert second.date_obs - first.date_obs == timedelta(days=1)
    assert second.path.parent == sim.raw_dirs[1]
    assert sim.night_bias_levels[0] == sim.bias_level != sim.night_bias_levels[1]
    flat1, flat2 = truth(sim, "flat_V.fits"), truth(sim, "night2/flat_V.fits")
    ratio = flat2 / flat1
    assert 0 < np.std(ratio) < 0.01  # dust moved a little, the rest is the same
    bias2 = truth(sim, "night2/bias.fits") - truth(sim, "bias.fits")
    assert np.ptp(bias2) < 1e-3 and bias2.mean() == pytest.approx(
        sim.night_bias_levels[1] - sim.bias_level, abs=1e-3)


def test_bias_frames_have_the_true_level_and_read_noise(night):
    bias_truth = truth(night, "bias.fits")
    rn = night.read_noise_adu
    residuals = [raw(f) - bias_truth - f.bias_offset for f in night.select("bias")]
    for resid in residuals:
        assert abs(resid.mean()) < 5 * rn / np.sqrt(resid.size)
        assert resid.std() == pytest.approx(rn, rel=0.05)
    a, b = night.select("bias")[:2]
    assert np.std(raw(a) - raw(b)) == pytest.approx(np.sqrt(2) * rn, rel=0.05)
    # the overscan follows the frame offset, row by row, as per-row correction assumes
    frame = night.select("bias")[0]
    overscan = (raw(frame) - bias_truth)[:, NX:]
    tolerance = 5 * rn / np.sqrt(overscan.size)
    assert np.mean(overscan) == pytest.approx(frame.bias_offset, abs=tolerance)
    rows_data, rows_over = bias_truth[:, :NX].mean(axis=1), bias_truth[:, NX:].mean(axis=1)
    assert np.corrcoef(rows_data, rows_over)[0, 1] > 0.8


def test_dark_rate_and_its_temperature_doubling(night):
    bias_truth = truth(night, "bias.fits")
    rate_ref = truth(night, "dark_rate.fits")
    bpm = fits.getdata(night.truth_dir / "bpm.fits")
    assert np.median(rate_ref) == pytest.approx(night.dark_rate_at_ref)
    measured = {}
    for set_point in SPEC["dark_temperatures"]:
        darks = [f for f in night.select("dark") if f.exptime == 300.0
                 and abs(f.temperature - set_point) <= 0.1]
        rates = [(raw(f) - bias_truth - f.bias_offset)[:, :NX] * night.gain / f.exptime
                 for f in darks]
        rate = np.median(rates, axis=0)
        temp = np.mean([f.temperature for f in darks])
        assert np.median(rate) == pytest.approx(night.dark_rate_at(temp), rel=0.10)
        measured[temp] = np.median(rate)
        hot = (bpm & 1) > 0
        assert hot.sum() > 20
        assert np.median(rate[hot]) > 8 * np.median(rate)
    (t_cold, r_cold), (t_warm, r_warm) = sorted(measured.items())
    assert r_warm / r_cold == pytest.approx(2 ** ((t_warm - t_cold) / 6.0), rel=0.15)


def test_flat_frames_have_the_true_shape_and_poisson_noise(night):
    bpm = fits.getdata(night.truth_dir / "bpm.fits")
    rn_e = night.read_noise_e
    for frame in night.select("flat"):
        signal = electrons(night, frame)
        level = np.median(signal)
        assert level == pytest.approx(frame.truth["flat_level_e"], rel=0.01)
        flat = truth(night, f"flat_{frame.filter}.fits")
        good = (bpm == 0) & (fits.getdata(night.truth_dir / f"cr_{frame.name}.fits") == 0)
        ratio = (signal / level / flat)[good]
        assert np.median(ratio) == pytest.approx(1.0, abs=2e-3)
        expected = np.sqrt(np.mean((level * flat[good] + rn_e**2) / (level * flat[good]) ** 2))
        assert np.std(ratio) == pytest.approx(expected, rel=0.20)


def test_science_frames_are_sky_times_flat_to_the_noise(night):
    bpm = fits.getdata(night.truth_dir / "bpm.fits")
    for frame in night.select("science"):
        sky = truth(night, f"sky_{frame.name}.fits")
        flat = truth(night, f"flat_{frame.filter}.fits")
        cr = fits.getdata(night.truth_dir / f"cr_{frame.name}.fits")
        sat = fits.getdata(night.truth_dir / f"sat_{frame.name}.fits")
        good = (bpm == 0) & (cr == 0) & (sat == 0)
        resid = (electrons(night, frame) - sky * flat)[good]
        z = resid / np.sqrt(sky[good] * flat[good] + night.read_noise_e**2)
        assert abs(np.mean(z)) < 0.05
        assert np.std(z) == pytest.approx(1.0, rel=0.05)


def test_cosmic_rays_stand_well_above_the_sky(night):
    hits = 0
    for frame in night.select("science"):
        cr = fits.getdata(night.truth_dir / f"cr_{frame.name}.fits") > 0
        flat = truth(night, f"flat_{frame.filter}.fits")
        expected = truth(night, f"sky_{frame.name}.fits") * flat
        excess = (electrons(night, frame) - expected)[cr] / np.sqrt(expected[cr] + 25)
        hits += cr.sum()
        if cr.any():
            assert np.median(excess) > 5 and np.mean(excess > 3) > 0.9
    assert hits > 10


def test_saturated_stars_clip_and_bleed_along_columns(night):
    for frame in night.select("science"):
        data = raw(frame)
        assert data.max() == night.saturation
        sat = fits.getdata(night.truth_dir / f"sat_{frame.name}.fits")
        assert np.array_equal(data[:, :NX] == night.saturation, (sat & 1) > 0)
        assert ((sat & 2) > 0).any()  # charge spilled beyond the saturated core
        labels, n = ndimage.label(sat > 0)
        assert n >= night.spec.n_saturated_stars
        for rows, cols in ndimage.find_objects(labels):
            if (rows.stop - rows.start) * (cols.stop - cols.start) > 20:
                assert rows.stop - rows.start > 2 * (cols.stop - cols.start)
        # charge is conserved: a band of columns holds the electrons the stars sent there
        ys, xs = np.nonzero(sat)
        assert ys.min() > 0 and ys.max() < NY - 1  # nothing ran off the chip
        band = slice(xs.min() - 8, xs.max() + 9)
        keep = (fits.getdata(night.truth_dir / f"cr_{frame.name}.fits") == 0)[:, band]
        sent = (truth(night, f"sky_{frame.name}.fits")
                * truth(night, f"flat_{frame.filter}.fits"))[:, band][keep].sum()
        assert electrons(night, frame)[:, band][keep].sum() == pytest.approx(sent, rel=0.01)
