"""Master builders: same answer as ccdproc on the same preprocessed input, refusals with
clear messages, NaN inputs masked, the spool cleaned up, dark rate and flat normalisation."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.builders.masters import build_master, check_group, preprocess_into, write_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.spool import Spool
from ccdflow.simulator import SimulationSpec, simulate_night
from tests.conftest import make_meta


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from ccdflow.framework.engine.plugins import get_plugin_manager

    spec = SimulationSpec(shape=(64, 80), n_bias=5, n_dark=4, dark_exptimes=(60.0,),
                          dark_temperatures=(-20.0,), n_flat=4, filters=("V",), n_science=0, seed=8)
    night = simulate_night(tmp_path_factory.mktemp("masters"), spec)
    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, _ = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    groups = {g[0].frame_type: g for g in group_frames(frames).values()}
    return night, manager, config, groups


@pytest.mark.parametrize(("method", "clip"), [("median", "none"), ("mean", "none"), ("mean", "sigma")])
def test_master_bias_equals_ccdproc_combine_of_the_same_preprocessed_frames(sim, method, clip):
    import ccdproc

    _, manager, config, groups = sim
    metas = groups["bias"]
    master = build_master("bias", metas, manager, config, method=method, clip=clip)
    with Spool(len(metas)) as spool:
        preprocess_into(spool, "bias", metas, manager, config)
        frames = [CCDData(np.array(f, np.float64), unit="adu") for f in spool.frames]
    options = {"sigma_clip": True, "sigma_clip_low_thresh": 3, "sigma_clip_high_thresh": 3,
               "sigma_clip_func": "median", "sigma_clip_dev_func": "mad_std"} if clip == "sigma" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ccdproc.combine(frames, method="average" if method == "mean" else "median", **options)
    assert np.max(np.abs(master.data - expected.data)) < 1e-3


def test_dark_master_has_rate_card_and_rate_image(sim, tmp_path):
    _, manager, config, groups = sim
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    assert dark.header["CF_EXPT"] == 60.0
    assert dark.header["CF_DKRT"] == pytest.approx(dark.header["CF_MED"] / 60.0, abs=1e-6)
    assert dark.header["CF_TEMP"] == pytest.approx(-20.0, abs=0.2) and "CF_TSPRD" in dark.header
    write_master(dark, tmp_path / "dark.fits")
    with fits.open(tmp_path / "dark.fits") as hdul:
        assert np.allclose(hdul["RATE"].data * 60.0, hdul["SCI"].data, atol=1e-4)
        assert hdul[0].header["CF_MASKF"] == 0.0


def test_flat_normalised_to_one_and_zero_flat_refused(sim, tmp_path):
    _, manager, config, groups = sim
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    flat = build_master("flat", groups["flat"], manager, config, {"bias": bias, "dark": dark})
    assert np.median(flat.data) == pytest.approx(1.0, abs=1e-6)
    assert 10000 < flat.header["CF_LEVEL"] < 20000  # ADU of the inputs before normalising
    # a "flat" with the lamp off: a bias frame labelled FLAT
    with fits.open(groups["bias"][0].path) as hdul:
        hdul[0].header["IMAGETYP"] = "FLAT"
        hdul[0].header["FILTER"] = "V"
        hdul[0].header["EXPTIME"] = 5.0  # a 0 s flat is refused when scanned
        hdul.writeto(tmp_path / "dark_flat.fits")
    (meta,), _ = scan_paths([tmp_path / "dark_flat.fits"], manager)
    metas = [meta]
    with pytest.raises(UnprocessableInputError, match=r"dark_flat.fits: flat has median .* positive level"):
        build_master("flat", [*groups["flat"][:2], *metas], manager, config, {"bias": bias, "dark": dark})


def test_nan_input_pixels_are_masked_and_never_in_the_master(sim, tmp_path):
    _, manager, config, groups = sim
    paths = []
    for i, meta in enumerate(groups["bias"][:3]):
        with fits.open(meta.path) as hdul:
            data = hdul[0].data.astype(np.float32)
            data[10, 10] = np.nan  # in every frame: nothing left to combine
            data[20, 5 + i] = np.inf
            fits.PrimaryHDU(data, hdul[0].header).writeto(tmp_path / f"b{i}.fits")
            paths.append(tmp_path / f"b{i}.fits")
    metas, _ = scan_paths(paths, manager)
    master = build_master("bias", metas, manager, config, method="mean", clip="none")
    assert np.all(np.isfinite(master.data)) and master.mask[10, 10]
    assert not master.mask[20, 5] and master.header["CF_NNAN"] == 6
    assert master.header["CF_MASKF"] == pytest.approx(1 / master.data.size, rel=1e-3)


def test_too_few_frames_for_sigma_clip_refused_unless_fallback(sim):
    _, manager, config, groups = sim
    two = groups["bias"][:2]
    with pytest.raises(UnprocessableInputError, match="sigma clipping needs at least 3 frames, got 2"):
        build_master("bias", two, manager, config)
    master = build_master("bias", two, manager, config, fallback="minmax")
    assert master.header["CF_CLIP"] == "minmax" and "only 2 frames" in master.header["CF_FALLB"]
    one = build_master("bias", two[:1], manager, config, fallback="minmax")
    assert one.header["CF_CLIP"] == "none"


def test_spool_is_removed_even_when_building_fails(sim, tmp_path):
    _, manager, config, groups = sim
    with pytest.raises(UnprocessableInputError):
        build_master("dark", groups["dark"], manager, config, scratch_dir=tmp_path)  # no master bias
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("field", "kind", "value", "match"), [
    ("shape", "bias", (40, 61), "disagree on shape: .*frame.fits"),
    ("binning", "bias", (2, 2), "disagree on binning"),
    ("readout_mode", "bias", "fast", "disagree on readout_mode"),
    ("filter", "flat", "R", "disagree on filter: V in .*; R in"),
    ("exposure_time", "dark", 90.0, "different exposure times: 60 s .* 90 s"),
    ("temperature", "dark", -10.0, "span -20.00 C .* -10.00 C"),
])
def test_mismatched_inputs_refused(sim, field, kind, value, match):
    _, _, config, _ = sim
    base = {"frame_type": kind, "exposure_time": 60.0}
    metas = [make_meta(**base), make_meta(**base), make_meta(**{**base, field: value, "path": "odd.fits"})]
    with pytest.raises(UnprocessableInputError, match=match):
        check_group(kind, metas, config)


def test_wrong_frame_type_refused(sim):
    _, _, config, _ = sim
    with pytest.raises(UnprocessableInputError, match=r"not bias frames: odd.fits \(dark\)"):
        check_group("bias", [make_meta(frame_type="bias"), make_meta(frame_type="dark", path="odd.fits")],
                    config)


# -- one bad frame is left out of its group, not fatal to it ----------------------------------------

def _copy_with_pixels(src, dst, fill):
    with fits.open(src) as hdul:
        header = hdul[0].header.copy()
    for key in ("BZERO", "BSCALE"):
        header.remove(key, ignore_missing=True)
    fits.PrimaryHDU(np.full((header["NAXIS2"], header["NAXIS1"]), fill, np.float32), header).writeto(dst)
    return dst


@pytest.mark.parametrize(("fill", "reason"), [
    (np.nan, "no finite pixel"), (np.inf, "no finite pixel"), (0.0, "every pixel is 0 (a dead readout)"),
    (1234.0, "every pixel is 1234 (a dead readout)"),
])
def test_a_dead_bias_is_left_out_and_listed_or_raises_without_a_list(sim, tmp_path, fill, reason):
    _, manager, config, groups = sim
    bad = _copy_with_pixels(groups["bias"][0].path, tmp_path / "dead.fits", fill)
    (meta,), _ = scan_paths([bad], manager)
    metas = [*groups["bias"], meta]
    with pytest.raises(UnprocessableInputError, match=re.escape(reason)):
        build_master("bias", metas, manager, config)
    excluded: list[tuple[str, str]] = []
    master = build_master("bias", metas, manager, config, excluded=excluded)
    assert excluded == [(str(bad), excluded[0][1])] and reason in excluded[0][1]
    assert str(bad) not in excluded[0][1]  # the path sits beside the reason, not in it
    reference = build_master("bias", groups["bias"], manager, config)
    assert np.array_equal(master.data, reference.data)
    h = master.header
    assert h["NCOMBINE"] == len(groups["bias"]) and h["CF_NEXCL"] == 1
    index = next(k[4:] for k in h if k.startswith("CF_I") and h[k] == "dead.fits")
    assert h[f"CF_X{index}"].startswith("dead.fits: ") and reason in h[f"CF_X{index}"]
    assert np.isfinite([v for v in h.values() if isinstance(v, float)]).all()


def test_a_zero_flat_is_left_out_and_the_master_flat_built_from_the_rest(sim, tmp_path):
    _, manager, config, groups = sim
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    bad = _copy_with_pixels(groups["flat"][0].path, tmp_path / "zero_flat.fits", 0.0)
    (meta,), _ = scan_paths([bad], manager)
    excluded: list[tuple[str, str]] = []
    flat = build_master("flat", [meta, *groups["flat"]], manager, config, {"bias": bias, "dark": dark},
                        excluded=excluded)
    assert [p for p, _ in excluded] == [str(bad)] and "dead readout" in excluded[0][1]
    assert np.median(flat.data) == pytest.approx(1.0, abs=1e-6)
    assert flat.header["NCOMBINE"] == len(groups["flat"])


def test_a_flat_without_light_is_left_out_for_its_level(sim, tmp_path):
    """A bias relabelled FLAT: its pixels vary, but nothing is left after the bias."""
    _, manager, config, groups = sim
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    with fits.open(groups["bias"][1].path) as hdul:
        hdul[0].header.update(IMAGETYP="FLAT", FILTER="V", EXPTIME=5.0)
        hdul.writeto(tmp_path / "lamp_off.fits")
    (meta,), _ = scan_paths([tmp_path / "lamp_off.fits"], manager)
    excluded: list[tuple[str, str]] = []
    build_master("flat", [*groups["flat"], meta], manager, config, {"bias": bias, "dark": dark},
                 excluded=excluded, clip="none")
    assert excluded and "positive level" in excluded[0][1]


def test_when_every_frame_is_left_out_the_error_lists_each_with_its_reason(sim, tmp_path):
    _, manager, config, groups = sim
    paths = [_copy_with_pixels(groups["bias"][i].path, tmp_path / f"z{i}.fits", v)
             for i, v in enumerate((0.0, np.nan))]
    metas, _ = scan_paths(paths, manager)
    with pytest.raises(UnprocessableInputError, match=r"no usable bias frame") as info:
        build_master("bias", metas, manager, config, excluded=[], fallback="none")
    assert "z0.fits: every pixel is 0" in str(info.value) and "z1.fits: no finite pixel" in str(info.value)
    assert list(tmp_path.glob(".ccdflow-spool-*")) == []


def test_sigma_clip_falls_back_for_what_remains(sim, tmp_path):
    """Three inputs, one dead: two remain, and the caller's fallback decides as for two frames."""
    _, manager, config, groups = sim
    bad = _copy_with_pixels(groups["bias"][0].path, tmp_path / "dead.fits", np.nan)
    (meta,), _ = scan_paths([bad], manager)
    master = build_master("bias", [*groups["bias"][:2], meta], manager, config, excluded=[],
                          fallback="minmax")
    assert master.header["CF_CLIP"] == "minmax" and "only 2 frames" in master.header["CF_FALLB"]


def test_master_stats_of_no_finite_pixel_are_empty_not_nan():
    from ccdflow.framework.builders.masters import master_stats

    assert master_stats("bias", np.full(4, np.nan, np.float32), [make_meta()], [np.nan]) == {}
    stats = master_stats("bias", np.ones(4, np.float32), [make_meta()], [np.nan])
    assert "CF_LEVEL" not in stats and stats["CF_MED"][0] == 1.0


def test_an_input_changed_after_hashing_is_left_out_and_checksums_are_of_the_bytes_read(sim):
    """The checksum a master records for an input is that of the bytes it combined: a file whose
    bytes differ from the checksum taken earlier (for the ledger) is left out, not mixed in."""
    from ccdflow.framework.io.fitsio import sha256_file

    _, manager, config, groups = sim
    metas = groups["bias"]
    checksums = [sha256_file(m.path) for m in metas]
    stale = ["0" * 64, *checksums[1:]]  # the first file "changed" since it was hashed
    excluded: list[tuple[str, str]] = []
    master = build_master("bias", metas, manager, config, input_checksums=stale, excluded=excluded)
    assert [(p, "changed while the night read it" in r) for p, r in excluded] == [(str(metas[0].path), True)]
    assert master.header["NCOMBINE"] == len(metas) - 1
    plain = build_master("bias", metas, manager, config)
    assert [plain.header[f"CF_S{i:04d}"] for i in range(1, len(metas) + 1)] == checksums
