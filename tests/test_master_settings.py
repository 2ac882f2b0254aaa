"""How the night builds masters (issue 14 items 2, 3): a sigma-clipped mean by default, per type
overridable by the instrument and a night file; small groups fall back to minmax rejection and
are warned about; the bad-pixel mask comes from the dark of the most frames and is not built
from too few."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io import cards
from ccdflow.pipeline.plan import plan_bpms
from ccdflow.simulator import SimulationSpec, simulate_night

HEADER = {"frame_type": {}, "exposure_time": {}, "date_obs": {}}


def test_settings_come_from_the_type_then_the_instrument_then_the_night_file(tmp_path):
    from ccdflow.framework.engine.plugins import get_plugin_manager

    plain = Instrument(name="g", header=HEADER)
    for kind in ("bias", "dark", "flat"):
        settings = plain.master_settings(kind)
        assert settings.combine == {"method": "mean", "clip": "sigma", "fallback": "minmax", "sigma_low": 3.0,
                                    "sigma_high": 3.0}
        assert settings.warn_below == 5 and settings.min_frames == 1
    assert plain.master_settings("bpm").min_frames == 3
    own = Instrument.model_validate({"name": "m", "header": HEADER,
                                     "masters": {"dark": {"method": "median", "warn_below": 8}}})
    assert own.master_settings("dark").combine["method"] == "median"
    assert own.master_settings("dark").combine["fallback"] == "minmax"  # the rest: the type's
    assert own.master_settings("bias").combine["method"] == "mean"
    with pytest.raises(ValueError, match="extra"):
        Instrument.model_validate({"name": "x", "header": HEADER, "masters": {"dark": {"metod": "median"}}})

    manager = get_plugin_manager(reload=True)
    night = tmp_path / "night.yaml"
    night.write_text("masters:\n  dark: {clip: minmax}\n  bpm: {min_frames: 6}\n")
    config = build(manager, instrument="generic", config_files=[night])
    assert config.instrument.master_settings("dark", manager).combine == {
        "method": "mean", "clip": "minmax", "fallback": "minmax", "sigma_low": 3.0, "sigma_high": 3.0}
    assert config.instrument.master_settings("bpm", manager).min_frames == 6
    # how masters are combined is in each master's identity, not in the science recipe's hash
    assert config.recipe_hash("science") == build(manager, instrument="generic").recipe_hash("science")
    typo = tmp_path / "typo.yaml"
    typo.write_text("masters:\n  darks: {method: median}\n")
    with pytest.raises(ConfigError, match="typo.yaml: masters: unknown calibration type .darks."):
        build(manager, instrument="generic", config_files=[typo])


def _master(path, kind, n, exptime, inst="generic"):
    header = fits.Header()
    for card in cards.SETUP:
        card.put(header, {"CF_INST": inst}.get(card.keyword, "x"))
    cards.MTYPE.put(header, kind)
    cards.EXPT.put(header, exptime)
    header["NCOMBINE"] = n
    fits.PrimaryHDU(np.zeros((4, 4), np.float32), header).writeto(path)
    return {"type": kind, "status": "built", "path": str(path), "name": f"2026-03-01_{path.stem}.fits"}


def test_the_bpm_uses_the_dark_of_the_most_frames_and_none_from_too_few(tmp_path):
    """Not "longest, then warmest": a 1-frame 600 s dark loses to 5 frames of 60 s; among equal
    counts the longer total exposure wins; a setup whose best dark has 2 frames gets no mask and
    the night is told why."""
    flat = _master(tmp_path / "flat.fits", "flat", 5, 5.0)
    darks = [_master(tmp_path / f"d{t:g}x{n}.fits", "dark", n, t)
             for n, t in ((1, 600.0), (5, 60.0), (5, 120.0), (4, 30.0))]
    ((_, dark, chosen_flat, _),) = plan_bpms([*darks, flat])
    assert dark["path"].endswith("d120x5.fits") and chosen_flat is flat
    skipped: list[str] = []
    other = [_master(tmp_path / "o_flat.fits", "flat", 5, 5.0, inst="other"),
             _master(tmp_path / "o_dark.fits", "dark", 2, 600.0, inst="other")]
    assert plan_bpms(other, skipped) == []
    assert len(skipped) == 1 and "has 2 frame(s), fewer than 3 (masters.bpm.min_frames)" in skipped[0]
    assert plan_bpms(other, None, lambda inst: 2) != []  # the instrument's min_frames decides


def test_the_bpm_never_uses_a_suspect_or_bad_master(tmp_path):
    """QA held the 10-frame dark as suspect: it is not chosen for frames, so not for their mask."""
    flat = _master(tmp_path / "flat.fits", "flat", 5, 5.0)
    suspect = {**_master(tmp_path / "d_many.fits", "dark", 10, 120.0), "quality": "suspect"}
    good = _master(tmp_path / "d_few.fits", "dark", 5, 60.0)
    skipped: list[str] = []
    ((_, dark, _, _),) = plan_bpms([suspect, good, flat], skipped)
    assert dark is good and skipped == [f"{suspect['name']} is suspect: not used for a bad-pixel mask"]
    skipped.clear()
    thin_flat = _master(tmp_path / "flat2.fits", "flat", 2, 5.0)
    assert plan_bpms([good, thin_flat], skipped) == []
    assert "flat 2026-03-01_flat2.fits has 2 frame(s), fewer than 3" in skipped[0]
    bad_flat = {**flat, "quality": "bad"}
    assert plan_bpms([good, bad_flat]) == []


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    spec = SimulationSpec(shape=(48, 48), overscan=8, n_bias=3, n_dark=2, dark_exptimes=(60.0,),
                          dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=1, seed=4)
    return simulate_night(tmp_path_factory.mktemp("small"), spec)


def test_a_small_group_is_built_with_minmax_and_a_warning_or_refused_below_min_frames(small):
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, _ = scan_paths(sorted(small.raw_dir.glob("*.fits")), manager)
    groups = {g[0].frame_type: g for g in group_frames(frames).values()}
    bias = build_master("bias", groups["bias"], manager, config, warn_below=5,
                        **config.instrument.master_settings("bias").combine)
    options = config.instrument.master_settings("dark").combine
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias}, warn_below=5, **options)
    assert dark.header["CF_CLIP"] == "minmax" and "only 2 frames" in dark.header["CF_FALLB"]
    assert dark.header["CF_FEWIN"] == "only 2 dark frame(s), fewer than 5 (masters.dark.warn_below)"
    assert any("fewer than 5" in str(h) for h in dark.header["HISTORY"])
    with pytest.raises(UnprocessableInputError, match="fewer than the 3 a master needs"):
        build_master("dark", groups["dark"], manager, config, {"bias": bias}, min_frames=3, **options)


def test_the_night_warns_of_small_masters_and_says_why_it_built_no_bpm(small, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(small.raw_dir), "--out", str(out),
                           "--caldb", str(tmp_path / "c.sqlite"), "--workers", "1", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    warnings = report["warnings"]
    for kind, n in (("bias", 3), ("dark", 2), ("flat", 3)):
        few = f"only {n} {kind} frame(s), fewer than 5 (masters.{kind}.warn_below)"
        assert any(few in w for w in warnings)
    assert any(w.startswith("no bad-pixel mask for 2026-03-01") and "fewer than 3" in w for w in warnings)
    assert not [m for m in report["masters"] if m["type"] == "bpm"]
    (dark,) = [m for m in report["masters"] if m["type"] == "dark"]
    assert dark["clip"] == "minmax" and dark["status"] == "built"
    with fits.open(dark["path"]) as hdul:
        assert hdul[0].header["CF_METH"] == "mean" and "CF_FEWIN" in hdul[0].header
