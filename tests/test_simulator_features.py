"""Each of the simulator's issue-14 features against its own truth: odd and warm set points,
faint sky, missing keywords, amplifier glow, non-linearity, several amplifiers, cosmic rays of
30-30000 e-, the Arrhenius dark law, bad columns; and the simulator's independence from the
reduction it is used to judge."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from ccdflow.simulator import SimulatedNight, SimulationSpec, simulate_night
from ccdflow.simulator.instrument import instrument_config, instrument_yaml, inverse_nonlinearity
from ccdflow.simulator.readout import nonlinear

BASE = dict(shape=(64, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(300.0,),
            dark_temperatures=(-20.0,), n_flat=2, filters=("V",), n_science=2, seed=23,
            n_stars=5, n_saturated_stars=0)
K_B = 8.617333262e-5  # eV/K, written out again: the test must not trust the spec's constant


def sim(tmp_path: Path, **changes) -> SimulatedNight:
    return simulate_night(tmp_path, SimulationSpec(**{**BASE, **changes}))


def truth(night: SimulatedNight, name: str) -> np.ndarray:
    return fits.getdata(night.truth_dir / name).astype(np.float64)


def signal_adu(night: SimulatedNight, frame) -> np.ndarray:
    """Raw frame minus the true bias structure and the frame's offset (whole raw frame)."""
    return fits.getdata(frame.path).astype(np.float64) - truth(night, "bias.fits") - frame.bias_offset


def data_e(night: SimulatedNight, frame) -> np.ndarray:
    """Data area in e- (one amplifier: data first), dark current included."""
    return signal_adu(night, frame)[:, : night.spec.shape[1]] * night.gain


def test_prescan_holds_bias_only_and_the_sections_say_where_the_data_are(tmp_path):
    night = sim(tmp_path, prescan=6, flat_level=20000.0)
    header = fits.getheader(night.frames[0].path)
    assert (header["NAXIS1"], header["TRIMSEC"], header["BIASSEC"]) == (78, "[7:70,1:64]", "[71:78,1:64]")
    flat = night.select("flat")[0]
    signal = signal_adu(night, flat)
    assert abs(signal[:, :6].mean()) < 1.0 and abs(signal[:, 70:].mean()) < 1.0
    data = signal[:, 6:70] * night.gain
    assert np.median(data / truth(night, "flat_V.fits")) == pytest.approx(
        flat.truth["flat_level_e"], rel=0.005)
    bias = truth(night, "bias.fits")
    assert bias[:, 6:12].mean() - bias[:, 40:60].mean() > 2.0  # the ramp starts at the data


def test_odd_set_points_jitter_and_warm_science(tmp_path):
    night = sim(tmp_path, dark_temperatures=(-15.0, -5.3), science_temperature_offset=1.8,
                science_exptimes=(20.0, 120.0), temperature_jitter=0.1, dark_rate=2.0,
                sky_rates={"V": 5.0}, n_dark=4)
    names = sorted(p.name for p in night.raw_dir.glob("*.fits"))
    assert "n1_dark_300s_-15C_001.fits" in names and "n1_dark_300s_-5C_004.fits" in names
    assert "n1_sci_V_20s_001.fits" in names and "n1_sci_V_120s_002.fits" in names
    for frame in night.frames:
        temp = fits.getheader(frame.path)["CCD-TEMP"]
        if frame.frame_type == "dark":
            point = -15.0 if "-15C" in frame.name else -5.3
        else:
            point = -13.2 if frame.frame_type == "science" else -15.0
        assert abs(temp - point) <= 0.1 + 1e-9 and temp == frame.temperature
    cold = [f.temperature for f in night.select("dark") if "-15C" in f.name]
    assert max(cold) - min(cold) > 0.05  # the jitter straddles -15: what split round(T/2) bins
    # the science frames carry the dark current of their own (warmer) temperature
    rate = truth(night, "dark_rate.fits")
    flat = truth(night, "flat_V.fits")
    bpm = truth(night, "bpm.fits") == 0
    for frame in night.select("science"):
        if frame.exptime != 120.0:
            continue
        good = bpm & (truth(night, f"cr_{frame.name}.fits") == 0)
        dark = data_e(night, frame) - truth(night, f"sky_{frame.name}.fits") * flat
        own = rate * night.spec.dark_factor(frame.temperature) * frame.exptime
        at_set_point = rate * night.spec.dark_factor(-15.0) * frame.exptime
        assert np.mean((dark - own)[good]) == pytest.approx(0.0, abs=1.0)
        assert np.mean((dark - at_set_point)[good]) > 30.0  # 1.8 C: ~23 % more than at -15 C


def test_faint_sky_leaves_read_noise_and_dark_visible(tmp_path):
    night = sim(tmp_path, sky_rates={"V": 5.0}, science_exptime=20.0, read_noise=7.0, gain=2.2,
                dark_rate=0.5, n_science=3)
    flat, rate = truth(night, "flat_V.fits"), truth(night, "dark_rate.fits")
    bpm = truth(night, "bpm.fits") == 0
    for frame in night.select("science"):
        sky = truth(night, f"sky_{frame.name}.fits")
        assert frame.truth["sky_rate"] == pytest.approx(5.0, rel=0.1)
        good = bpm & (truth(night, f"cr_{frame.name}.fits") == 0) & (sky < 1.5 * np.median(sky))
        dark = rate * night.spec.dark_factor(frame.temperature) * frame.exptime
        expected = sky * flat + dark
        resid = (data_e(night, frame) - expected)[good]
        full = resid / np.sqrt(expected[good] + 7.0**2)
        assert abs(full.mean()) < 0.05 and full.std() == pytest.approx(1.0, abs=0.04)
        # a model without read noise, or without the dark's shot noise, is visibly wrong
        assert (resid / np.sqrt(expected[good])).std() > 1.15
        assert (resid / np.sqrt((sky * flat)[good] + 49.0)).std() > 1.02


def test_missing_keywords_come_from_the_instrument_file(tmp_path):
    night = sim(tmp_path, detector_keywords=False, gain=2.2, read_noise=7.0)
    for frame in night.frames:
        header = fits.getheader(frame.path)
        assert not {"GAIN", "EGAIN", "RDNOISE", "SATURATE"} & set(header)
        assert header["INSTRUME"] == "ccdflow-sim" and "BIASSEC" in header
    config = yaml.safe_load(instrument_yaml(night.spec))
    assert (config["gain"], config["read_noise"], config["saturation"]) == (2.2, 7.0, 60000.0)
    assert config["extends"] == "generic" and config["identify"]["INSTRUME"] == "ccdflow-sim"
    assert "gain" not in instrument_config(SimulationSpec(**BASE))  # headers say it already
    with pytest.raises(ValueError, match="different gains"):
        instrument_config(SimulationSpec(**{**BASE, "amplifiers": 2, "amp_gains": (1.5, 1.7)}))


def test_amplifier_glow_decays_from_the_corner_and_scales_with_exposure(tmp_path):
    night = sim(tmp_path, amp_glow=3.0, amp_glow_scale=8.0, dark_exptimes=(60.0, 300.0))
    glow = truth(night, "glow.fits")
    assert glow[0, 0] == pytest.approx(3.0, rel=1e-6)
    assert glow[0, 16] / glow[0, 0] == pytest.approx(math.exp(-2.0), rel=1e-4)
    assert glow[63, 63] < 1e-4
    assert not (fits.getdata(night.truth_dir / "bpm.fits")[glow > 0.3] & 1).any()  # not hot
    rate = truth(night, "dark_rate.fits")
    corner = glow > 1.0
    seen = {}
    for t in (60.0, 300.0):
        darks = [f for f in night.select("dark") if f.exptime == t]
        excess = np.mean([data_e(night, f) - (rate - glow) * night.spec.dark_factor(f.temperature)
                          * t for f in darks], axis=0)
        factor = np.mean([night.spec.dark_factor(f.temperature) for f in darks])
        seen[t] = excess[corner].sum() / (glow[corner].sum() * factor * t)
    assert seen[60.0] == pytest.approx(1.0, abs=0.05)
    assert seen[300.0] == pytest.approx(1.0, abs=0.02)


def test_non_thermal_glow_is_the_same_at_every_temperature(tmp_path):
    night = sim(tmp_path, amp_glow=4.0, amp_glow_scale=6.0, amp_glow_thermal=False,
                dark_temperatures=(-20.0, -5.0), n_dark=3)
    glow, rate = truth(night, "glow.fits"), truth(night, "dark_rate.fits")
    assert rate[0, 0] < 1.0 < glow[0, 0]  # not in dark_rate
    corner = glow > 1.0
    for point in (-20.0, -5.0):
        darks = [f for f in night.select("dark") if abs(f.temperature - point) <= 0.1]
        excess = np.mean([data_e(night, f) - rate * night.spec.dark_factor(f.temperature) * 300.0
                          for f in darks], axis=0)
        assert excess[corner].sum() / (glow[corner].sum() * 300.0) == pytest.approx(1.0, abs=0.02)


def test_four_amplifiers_glow_at_their_own_corners(tmp_path):
    night = sim(tmp_path, amplifiers=4, amp_glow=2.0, amp_glow_scale=5.0)
    glow = truth(night, "glow.fits")
    for y, x in ((0, 0), (0, 63), (63, 0), (63, 63)):
        assert glow[y, x] == pytest.approx(2.0, rel=1e-6)
    assert glow[32, 32] < 0.01


def test_nonlinearity_follows_the_polynomial(tmp_path):
    k2 = -2e-6
    night = sim(tmp_path, nonlinearity=(k2,), flat_level=30000.0)
    flat, rate = truth(night, "flat_V.fits"), truth(night, "dark_rate.fits")
    bpm = truth(night, "bpm.fits") == 0
    for frame in night.select("flat"):
        good = bpm & (truth(night, f"cr_{frame.name}.fits") == 0)
        true_e = frame.truth["flat_level_e"] * flat + rate * frame.exptime * \
            night.spec.dark_factor(frame.temperature)
        s = true_e / night.gain
        read = signal_adu(night, frame)[:, :64]
        measured = np.median((read / s)[good])
        assert measured == pytest.approx(1 + k2 * np.median(s[good]), abs=1e-3)
        assert measured < 0.97  # -2.7 % at 20000 ADU: far from linear
    # the instrument file's inverse undoes it to a fraction of an ADU over the whole range
    inverse = inverse_nonlinearity(night.spec)
    assert inverse[0] == 0.0 and yaml.safe_load(instrument_yaml(night.spec))["linearity"] == inverse
    s = np.linspace(0, 59000, 200)
    back = np.polynomial.polynomial.polyval(nonlinear(s, night.spec.nonlinearity).astype(float), inverse)
    assert np.abs(back - s).max() < 0.1


AMPS = dict(amplifiers=4, amp_bias_offsets=(0.0, 20.0, -15.0, 35.0),
            amp_gains=(1.5, 1.6, 1.4, 1.55), amp_read_noises=(5.0, 6.0, 4.0, 7.0))


def test_four_amplifiers_have_their_own_level_gain_noise_and_overscan(tmp_path):
    night = sim(tmp_path, **AMPS, n_bias=4)
    amps = json.loads((night.truth_dir / "truth.json").read_text())["amplifiers"]
    assert [a["name"] for a in amps] == list("ABCD")
    header = fits.getheader(night.frames[0].path)
    assert "BIASSEC" not in header and "GAIN" not in header
    for a in amps:
        assert header[f"BSEC{a['name']}"] == a["overscan"] and header[f"DSEC{a['name']}"] == a["data"]
        assert header[f"GAIN_{a['name']}"] == a["gain_e_per_adu"]
    assert (amps[0]["overscan"], amps[0]["data"]) == ("[1:4,1:32]", "[5:36,1:32]")
    assert (amps[3]["overscan"], amps[3]["data"]) == ("[69:72,33:64]", "[37:68,33:64]")

    def region(a, key):
        x, y = (tuple(int(v) for v in r.split(":")) for r in a[key].strip("[]").split(","))
        return slice(y[0] - 1, y[1]), slice(x[0] - 1, x[1])

    # each amplifier's level: exactly its offset against the same chip without offsets, and
    # what its overscan reads
    level_free = simulate_night(tmp_path / "twin", SimulationSpec(
        **{**BASE, **AMPS, "n_bias": 4, "amp_bias_offsets": (0.0,) * 4}))
    offsets = truth(night, "bias.fits") - truth(level_free, "bias.fits")
    biases = night.select("bias")
    for a, gain, noise in zip(amps, AMPS["amp_gains"], AMPS["amp_read_noises"], strict=True):
        for key in ("overscan", "data"):
            assert np.allclose(offsets[region(a, key)], a["bias_offset_adu"], atol=1e-3)
        read = np.concatenate([signal_adu(night, f)[region(a, "overscan")].ravel() for f in biases])
        assert read.mean() == pytest.approx(0.0, abs=5 * noise / gain / np.sqrt(read.size))
        diff = (fits.getdata(biases[0].path).astype(float)
                - fits.getdata(biases[1].path).astype(float))[region(a, "data")]
        assert diff.std() / np.sqrt(2) == pytest.approx(noise / gain, rel=0.06)
    flat = truth(night, "flat_V.fits")
    bpm = truth(night, "bpm.fits") == 0
    for frame in night.select("flat"):
        read = signal_adu(night, frame)
        electrons = frame.truth["flat_level_e"] * flat  # dark is ~0.25 e- here
        for a, gain in zip(amps, AMPS["amp_gains"], strict=True):
            rows, cols = region(a, "data")
            area = (rows, slice(cols.start - 4, cols.stop - 4))
            ratio = np.median((read[rows, cols] / electrons[area])[bpm[area]])
            assert ratio == pytest.approx(1 / gain, rel=0.003)
            assert abs(read[region(a, "overscan")].mean()) < 1.0  # no light in the overscan


def test_two_amplifiers_split_left_and_right(tmp_path):
    night = sim(tmp_path / "a", amplifiers=2, amp_bias_offsets=(0.0, 40.0))
    amps = json.loads((night.truth_dir / "truth.json").read_text())["amplifiers"]
    assert [(a["overscan"], a["data"]) for a in amps] == [
        ("[1:4,1:64]", "[5:36,1:64]"), ("[69:72,1:64]", "[37:68,1:64]")]
    twin = sim(tmp_path / "b", amplifiers=2)
    offsets = truth(night, "bias.fits") - truth(twin, "bias.fits")
    assert np.allclose(offsets[:, :36], 0.0) and np.allclose(offsets[:, 36:], 40.0, atol=1e-3)
    # the glow and the start-of-line ramp sit at each amplifier's outer edge
    ramp = truth(twin, "bias.fits").mean(axis=0)
    assert ramp[4] - ramp[10] > 3.0 and ramp[67] - ramp[61] > 3.0


def test_cosmic_rays_span_30_to_30000_electrons(tmp_path):
    night = sim(tmp_path, cosmic_ray_energy=(30.0, 30000.0), cosmic_ray_rate=300.0,
                cosmic_ray_charge_truth=True, science_exptime=100.0)
    charges, excess_z = [], []
    flat = truth(night, "flat_V.fits")
    for frame in night.select("science"):
        charge = truth(night, f"crq_{frame.name}.fits")
        assert np.array_equal(charge > 0, truth(night, f"cr_{frame.name}.fits") > 0)
        hit = charge > 0
        charges.append(charge[hit])
        expected = truth(night, f"sky_{frame.name}.fits") * flat
        sat = truth(night, f"sat_{frame.name}.fits") == 0
        resid = data_e(night, frame) - expected - charge
        ok = hit & sat
        excess_z.append(resid[ok] / np.sqrt(expected[ok] + charge[ok] + 25.0))
    q = np.concatenate(charges)
    assert q.size > 500
    assert q.min() >= 15.0 - 1e-3 and np.percentile(q, 99) <= 30000.0
    assert np.mean(q < 300) > 0.2 and np.mean(q > 3000) > 0.2  # log-uniform over 3 decades
    z = np.concatenate(excess_z)
    assert abs(np.median(z)) < 0.1 and 1.4826 * np.median(np.abs(z)) == pytest.approx(1.0, abs=0.1)


def test_arrhenius_dark_law(tmp_path):
    night = sim(tmp_path, dark_law="arrhenius", band_gap=1.12, dark_temperatures=(-20.0, 0.0),
                dark_rate=0.2)
    t1, t2 = 253.15, 273.15
    arrhenius = (t2 / t1) ** 3 * math.exp(-1.12 / (2 * K_B) * (1 / t2 - 1 / t1))
    doubling = 2 ** (20 / 6.0)
    assert arrhenius == pytest.approx(8.23, abs=0.02) and abs(doubling / arrhenius - 1) > 0.2
    assert night.spec.dark_factor(0.0) / night.spec.dark_factor(-20.0) == pytest.approx(arrhenius)
    good = truth(night, "bpm.fits") == 0
    sums = {}
    for point in (-20.0, 0.0):
        darks = [f for f in night.select("dark") if abs(f.temperature - point) <= 0.1]
        sums[point] = np.mean([data_e(night, f)[good & (truth(night, f"cr_{f.name}.fits") == 0)]
                               .mean() / night.spec.dark_factor(f.temperature) for f in darks])
        temp = np.mean([f.temperature for f in darks])
        assert night.dark_rate_at(temp) == pytest.approx(
            night.dark_rate_at_ref * night.spec.dark_factor(temp))
    assert sums[0.0] / sums[-20.0] == pytest.approx(1.0, abs=0.02)  # the law explains the data


def test_hot_and_dead_columns_in_truth_and_pixels(tmp_path):
    night = sim(tmp_path)
    columns = json.loads((night.truth_dir / "truth.json").read_text())["bad_columns"]
    rate, bpm = truth(night, "dark_rate.fits"), truth(night, "bpm.fits").astype(int)
    x, last = columns["hot"]["x"], columns["hot"]["rows"][1]
    assert np.all(bpm[: last + 1, x] & 4) and np.median(rate[: last + 1, x]) > 10 * np.median(rate)
    x, first = columns["dead"]["x"], columns["dead"]["rows"][0]
    flat = night.select("flat")[0]
    level = data_e(night, flat)
    assert np.all(bpm[first:, x] & 4) and np.median(level[first:, x]) < 0.15 * np.median(level)


SIMULATOR = Path(__file__).resolve().parents[1] / "ccdflow" / "simulator"


def test_simulator_imports_no_reduction_code():
    """The simulator judges the reduction, so it must not share its code: every ccdflow
    import in ccdflow/simulator is ccdflow.simulator (checked in the source and at run time)."""
    for path in sorted(SIMULATOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("ccdflow") or name.startswith("ccdflow.simulator"), \
                    f"{path.name} imports {name}"
    code = ("import sys, pkgutil, importlib, ccdflow.simulator as s\n"
            "for m in pkgutil.iter_modules(s.__path__): importlib.import_module(f's.{m.name}'"
            ".replace('s.', 'ccdflow.simulator.', 1))\n"
            "print(sorted(m for m in sys.modules if m.startswith('ccdflow.')"
            " and not m.startswith('ccdflow.simulator')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_docs_examples_run(tmp_path, monkeypatch):
    """docs/simulator.md's Python blocks, in order, in an empty folder."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "simulator.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split("```python\n")[1:]]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "docs/simulator.md", "exec"), {})
    assert (tmp_path / "sim" / "truth" / "truth.json").exists()
    config = yaml.safe_load((tmp_path / "camera.yaml").read_text())
    assert len(config["geometry"]["amplifiers"]) == 4 and config["linearity"][0] == 0.0
