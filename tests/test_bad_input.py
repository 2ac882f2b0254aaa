"""Bad input through the public APIs: refused with a message that names what is wrong, or
masked and kept out of everything downstream; raw files are never touched."""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import MasterRef, reduce_frame
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import AlgorithmError, CcdflowError, UnprocessableInputError
from ccdflow.framework.headers.scan import scan_file, scan_paths
from ccdflow.framework.io.fitsio import read_ccd, read_product, sha256_file
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.framework.numerics.combine import combine
from ccdflow.simulator import SimulationSpec, simulate_night

NY, NX, OSCAN = 48, 64, 8


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    spec = SimulationSpec(shape=(NY, NX), overscan=OSCAN, n_bias=5, n_dark=0, n_flat=3,
                          filters=("V", "R"), n_science=1, seed=11)
    return simulate_night(tmp_path_factory.mktemp("bad"), spec)


@pytest.fixture(scope="module")
def env(night, tmp_path_factory):
    """Plugin manager, a generic config without a dark step, frames by type, and masters."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic", params=["dark.skip=true"])
    frames, rejected = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    assert not rejected
    by: dict[str, list] = {}
    for meta in frames:
        key = meta.frame_type + (f"_{meta.filter}" if meta.frame_type in ("flat", "science") else "")
        by.setdefault(key, []).append(meta)
    out = tmp_path_factory.mktemp("masters")
    bias = build_master("bias", by["bias"], manager, config)
    write_ccd(bias, out / "bias.fits")
    for band in ("V", "R"):
        flat = build_master("flat", by[f"flat_{band}"], manager, config, {"bias": bias})
        write_ccd(flat, out / f"flat_{band}.fits")
    return manager, config, by, out


def masters_for(out: Path, flat: str = "flat_V.fits", bias: str = "bias.fits") -> dict[str, MasterRef]:
    return {"bias": MasterRef.load("bias", out / bias), "flat": MasterRef.load("flat", out / flat)}


def copy_with(src: str | Path, dst: Path, edit) -> Path:
    """A copy of a raw file with its pixels edited by ``edit(data)`` (header kept)."""
    with fits.open(src) as hdul:
        data = hdul[0].data.astype(np.float32)
        edit(data)
        fits.PrimaryHDU(data, header=hdul[0].header).writeto(dst)
    return dst


# -- NaN and inf ------------------------------------------------------------------------------------

def test_nan_and_inf_are_masked_when_read(tmp_path):
    data = np.ones((8, 8), np.float32)
    data[1, 2], data[3, 4], data[5, 6] = np.nan, np.inf, -np.inf
    fits.PrimaryHDU(data).writeto(tmp_path / "f.fits")
    ccd = read_ccd(tmp_path / "f.fits")
    assert ccd.data.dtype == np.float32
    assert set(zip(*np.nonzero(ccd.mask), strict=True)) == {(1, 2), (3, 4), (5, 6)}
    assert np.isnan(ccd.data[ccd.mask]).all() and ccd.header["CF_NBAD"] == 3


def test_blank_integer_pixels_are_masked(tmp_path):
    hdu = fits.PrimaryHDU(np.array([[1, 2], [-32768, 4]], np.int16))
    hdu.header["BLANK"] = -32768
    hdu.writeto(tmp_path / "blank.fits")
    ccd = read_ccd(tmp_path / "blank.fits")
    assert ccd.mask.tolist() == [[False, False], [True, False]]
    assert ccd.data[0].tolist() == [1.0, 2.0]


def test_nan_and_inf_never_reach_a_master(night, env, tmp_path):
    """The poisoned pixel of one input is left out: the master there is what the others give."""
    manager, config, by, _ = env
    metas = by["bias"]
    y, x = 10, 20

    def poison(data):
        data[y, x], data[y + 1, x + 1] = np.nan, np.inf

    bad = copy_with(metas[0].path, tmp_path / "poisoned.fits", poison)
    with_bad = [scan_file(bad, manager), *metas[1:]]
    master = build_master("bias", with_bad, manager, config)
    without = build_master("bias", metas[1:], manager, config)
    assert np.isfinite(master.data).all() and np.isfinite(master.uncertainty.array).all()
    assert master.mask is None or not master.mask[y, x]
    assert master.data[y, x] == pytest.approx(without.data[y, x], abs=1e-4)
    assert master.data[y + 1, x + 1] == pytest.approx(without.data[y + 1, x + 1], abs=1e-4)


def test_nan_in_a_science_frame_is_masked_not_spread(night, env, tmp_path):
    manager, config, by, out = env
    (meta,) = by["science_V"]
    bad = copy_with(meta.path, tmp_path / "sci_nan.fits", lambda d: d.__setitem__((5, 7), np.nan))
    reduce_frame(scan_file(bad, manager), manager, config, masters_for(out), tmp_path / "red.fits")
    product = read_product(tmp_path / "red.fits")
    assert product.mask[5, 7]
    finite = np.isfinite(product.data)
    assert finite.sum() == finite.size - 1  # only the poisoned pixel


# -- integer, BZERO and BSCALE data -------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "values"), [
    (np.uint16, [0, 1, 32767, 32768, 65535]),  # stored as int16 with BZERO = 32768
    (np.int16, [-32768, -1, 0, 1, 32767]),
    (np.uint32, [0, 1, 2**31, 2**24, 16_000_000]),  # int32 with BZERO = 2**31
    (np.int32, [-(2**24), -1, 0, 1, 2**24]),
])
def test_integer_data_is_read_as_float32_with_its_true_values(tmp_path, dtype, values):
    data = np.array([values, values[::-1]], dtype=dtype)
    fits.PrimaryHDU(data).writeto(tmp_path / "int.fits")
    ccd = read_ccd(tmp_path / "int.fits")
    assert ccd.data.dtype == np.float32
    np.testing.assert_array_equal(ccd.data, data.astype(np.float64).astype(np.float32))
    for key in ("BZERO", "BSCALE"):  # the pixels are already scaled: the cards must not be reapplied
        assert key not in ccd.header


def test_bscale_and_bzero_are_applied_once(tmp_path):
    hdu = fits.PrimaryHDU(np.array([[1, 2], [3, 4]], np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 10.0
    hdu.writeto(tmp_path / "scaled.fits")
    with fits.open(tmp_path / "scaled.fits", do_not_scale_image_data=True) as hdul:
        assert hdul[0].data.tolist() == [[1, 2], [3, 4]]  # stored raw on disk
    ccd = read_ccd(tmp_path / "scaled.fits")
    assert ccd.data.tolist() == [[12.0, 14.0], [16.0, 18.0]]
    write_ccd(ccd, tmp_path / "product.fits")
    assert read_product(tmp_path / "product.fits").data.tolist() == [[12.0, 14.0], [16.0, 18.0]]


def test_real_efosc_int16_bzero_frame_reads_full_range(real_data):
    path = sorted((real_data / "efosc-ntt").glob("EFOSC.2022-01-28T04*.fits.gz"))[0]
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        stored = hdul[0].data
        assert stored.dtype.kind == "i" and hdul[0].header["BZERO"] == 32768
        expected = stored.astype(np.float32) + 32768
    ccd = read_ccd(path)
    np.testing.assert_array_equal(ccd.data, expected)
    assert ccd.data.max() == 65535  # saturated stars survive the unsigned offset


# -- shapes and metadata of masters ---------------------------------------------------------------

def test_master_of_another_shape_is_refused(night, env, tmp_path):
    manager, config, by, out = env
    bias = read_product(out / "bias.fits")
    small = CCDData(bias.data[:-4], unit="adu", header=bias.header, uncertainty=bias.uncertainty[:-4])
    write_ccd(small, tmp_path / "small_bias.fits")
    masters = {"bias": MasterRef.load("bias", tmp_path / "small_bias.fits"),
               "flat": MasterRef.load("flat", out / "flat_V.fits")}
    (meta,) = by["science_V"]
    with pytest.raises(UnprocessableInputError, match=r"master bias shape \(44, 64\) does not match "
                       r"the frame \(48, 64\)") as err:
        reduce_frame(meta, manager, config, masters, tmp_path / "red.fits")
    assert str(meta.path) in str(err.value)
    assert not (tmp_path / "red.fits").exists()


def test_flat_of_another_filter_is_refused(night, env, tmp_path):
    manager, config, by, out = env
    (meta,) = by["science_V"]
    with pytest.raises(UnprocessableInputError, match=r"filter.*'R'.*'V'|filter.*'V'.*'R'"):
        reduce_frame(meta, manager, config, masters_for(out, flat="flat_R.fits"), tmp_path / "r.fits")


def test_master_of_another_binning_is_refused(night, env, tmp_path):
    manager, config, by, out = env
    bias = read_product(out / "bias.fits")
    bias.header["CF_BIN"] = "2x2"
    write_ccd(bias, tmp_path / "bias_2x2.fits")
    (meta,) = by["science_V"]
    with pytest.raises(UnprocessableInputError, match="binning"):
        reduce_frame(meta, manager, config, masters_for(out, bias=str(tmp_path / "bias_2x2.fits")),
                     tmp_path / "r.fits")


# -- flats that cannot be normalised --------------------------------------------------------------

@pytest.mark.parametrize("level", [0.0, -0.5])
def test_master_flat_with_zero_or_negative_median_is_refused(night, env, tmp_path, level):
    manager, config, by, out = env
    flat = read_product(out / "flat_V.fits")
    flat.data[:] = level
    write_ccd(flat, tmp_path / "dead_flat.fits")
    (meta,) = by["science_V"]
    with pytest.raises(UnprocessableInputError, match=rf"master flat median is {level:g}"):
        reduce_frame(meta, manager, config, masters_for(out, flat=str(tmp_path / "dead_flat.fits")),
                     tmp_path / "r.fits")


def test_flat_inputs_without_light_are_refused_by_the_builder(night, env, tmp_path):
    """Bias frames relabelled as flats: median ~0 after bias subtraction, nothing to scale by."""
    manager, config, by, out = env
    bias = read_product(out / "bias.fits")
    dark_flats = []
    for i, meta in enumerate(by["bias"][:3]):
        dst = tmp_path / f"fake_flat_{i}.fits"
        with fits.open(meta.path) as hdul:
            hdul[0].header["IMAGETYP"], hdul[0].header["FILTER"] = "FLAT", "V"
            hdul[0].header["EXPTIME"] = 5.0  # a 0 s flat is refused when scanned
            hdul.writeto(dst)
        dark_flats.append(scan_file(dst, manager))
    with pytest.raises(UnprocessableInputError, match=r"flat has median") as err:
        build_master("flat", dark_flats, manager, config, {"bias": bias})
    assert "fake_flat_" in str(err.value)


# -- stacks too small to combine ------------------------------------------------------------------

def test_empty_stack_is_refused(env):
    manager, config, *_ = env
    with pytest.raises(UnprocessableInputError, match="no bias frames"):
        build_master("bias", [], manager, config)
    with pytest.raises(AlgorithmError, match="no input frames"):
        combine([], clip="sigma")


def test_single_frame_sigma_clip_is_refused(env):
    with pytest.raises(AlgorithmError, match=r"sigma.*(1 frame|one frame|at least)"):
        combine([np.ones((4, 4), np.float32)], clip="sigma")


def test_single_frame_without_clipping_is_accepted():
    result = combine([np.full((4, 4), 3.0, np.float32)], method="mean", clip="none")
    assert (result.data == 3.0).all() and (result.n_used == 1).all()


# -- corrupt and truncated files ------------------------------------------------------------------

def corrupt_variants(raw: Path, folder: Path) -> dict[str, Path]:
    """Broken copies of a good raw file, each the way files really break."""
    blob = raw.read_bytes()
    variants = {
        "empty": b"",
        "garbage": b"this is not a FITS file\n" * 200,
        "header only": blob[:2880],
        "truncated data": blob[: len(blob) - 2 * 2880],
        "truncated gzip": gzip.compress(blob)[:1500],
    }
    out = {}
    for name, content in variants.items():
        path = folder / (name.replace(" ", "_") + (".fits.gz" if "gzip" in name else ".fits"))
        path.write_bytes(content)
        out[name] = path
    return out


def test_corrupt_files_are_clear_errors_and_never_modified(night, env, tmp_path):
    manager, config, by, out = env
    (meta,) = by["science_V"]
    variants = corrupt_variants(Path(meta.path), tmp_path)
    before = {p: sha256_file(p) for p in variants.values()}
    for name, path in variants.items():
        with pytest.raises(UnprocessableInputError) as err:
            read_ccd(path)
        assert str(path) in str(err.value), name
        assert "Traceback" not in str(err.value)
    truncated = variants["truncated data"]
    with pytest.raises(UnprocessableInputError, match="truncated"):
        read_ccd(truncated)
    # the header of a truncated file is intact, so a scan accepts it; the reduction refuses it
    # with the same clear error, and writes no product
    with pytest.raises(UnprocessableInputError, match="truncated"):
        reduce_frame(scan_file(truncated, manager), manager, config, masters_for(out),
                     tmp_path / "red.fits")
    assert not (tmp_path / "red.fits").exists()
    # a scan of the folder reports every other broken file with its reason, and stops on none
    frames, rejected = scan_paths(list(variants.values()), manager)
    reasons = dict(rejected)
    for name in ("empty", "garbage", "truncated gzip"):
        assert str(variants[name]) in reasons, name
    assert after_hashes(variants) == before


def after_hashes(variants: dict[str, Path]) -> dict[Path, str]:
    return {p: sha256_file(p) for p in variants.values()}


def test_raw_file_is_not_modified_by_a_reduction(night, env, tmp_path):
    manager, config, by, out = env
    (meta,) = by["science_V"]
    raw = tmp_path / "raw.fits"
    shutil.copy(meta.path, raw)
    raw.chmod(0o444)  # as archives hand them out; the reduction must not need write access
    digest = sha256_file(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no astropy "fixing" of the input either
        reduce_frame(scan_file(raw, manager), manager, config, masters_for(out), tmp_path / "red.fits")
    assert sha256_file(raw) == digest
    assert read_product(tmp_path / "red.fits").header["CF_RAWS"] == digest


def test_errors_are_ccdflow_errors_not_library_exceptions(tmp_path):
    """Callers (the CLI, the night runner) catch CcdflowError: nothing else may escape."""
    (tmp_path / "dir.fits").mkdir()
    for path in (tmp_path / "missing.fits", tmp_path / "dir.fits"):
        with pytest.raises(CcdflowError):
            read_ccd(path)
