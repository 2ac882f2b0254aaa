"""StepContext.owns_pixels: steps write into a frame read for the run alone, never into a caller's
frame or calibration, and what they make is what new arrays would have held (a reduction and a
flat master with owns_pixels True and False are identical)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

import ccdflow
from ccdflow.framework.builders import preprocess
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.io.fitsio import read_product
from ccdflow.framework.numerics import kernels
from ccdflow.pipeline import single


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    from ccdflow.testing.night import reduce_simulated_night, simulated_spec

    return reduce_simulated_night(tmp_path_factory.mktemp("owned"), simulated_spec())


@pytest.fixture
def in_place_writes(monkeypatch) -> list[bool]:
    """Per plane a kernel wrote, whether it wrote into the array it was given."""
    seen: list[bool] = []
    original = kernels._target

    def spying(a, like, in_place):
        got = original(a, like, in_place)
        seen.append(got is a)
        return got

    monkeypatch.setattr(kernels, "_target", spying)
    return seen


def masters(night) -> dict[str, CCDData]:
    return {k: read_product(night.master(k)["path"]) for k in ("bias", "dark", "flat")}


def snapshot(ccd: CCDData) -> dict[str, np.ndarray | None]:
    return {"data": np.array(ccd.data, copy=True),
            "mask": None if ccd.mask is None else np.array(ccd.mask, copy=True),
            "uncert": None if ccd.uncertainty is None else np.array(ccd.uncertainty.array, copy=True),
            "flags": None if getattr(ccd, "flags", None) is None else np.array(ccd.flags, copy=True)}


def unchanged(ccd: CCDData, before: dict[str, np.ndarray | None]) -> None:
    now = snapshot(ccd)
    for key, value in before.items():
        if value is None:
            assert now[key] is None, key
        else:
            assert now[key].dtype == value.dtype and np.array_equal(now[key], value, equal_nan=True), key


def caller_raw(night, masked: bool = True) -> CCDData:  # masked: a mask and an inf
    """The science raw as a caller might hold it: float32, contiguous, writable, with a mask of
    their own: exactly what a step could write into if the API handed it on."""
    with fits.open(next(night.raw_dir.glob("*_sci_*.fits"))) as hdul:
        data = np.ascontiguousarray(hdul[0].data, np.float32)
        header = hdul[0].header.copy()
    if masked:  # the reading masks an inf and writes NaN there: into its own copy
        data[20, 30] = np.inf
    mask = np.zeros(data.shape, bool)
    mask[5:8, 9:12] = masked
    return CCDData(data, unit="adu", header=header, mask=mask)


def same_product(a: CCDData, b: CCDData, raw: bool = True) -> None:
    assert np.array_equal(a.data, b.data, equal_nan=True)
    assert np.array_equal(a.uncertainty.array, b.uncertainty.array, equal_nan=True)
    assert np.array_equal(a.flags, b.flags) and np.array_equal(a.mask, b.mask)
    # CF_RAW/CF_RAWS name the raw: a file's, or "in-memory" and its pixels' hash
    cards = [k for k in a.header if k.startswith("CF_") and (raw or not k.startswith("CF_RAW"))]
    assert {k: a.header[k] for k in cards} == {k: b.header[k] for k in cards}


def test_a_callers_frame_and_calibrations_are_never_written(night, in_place_writes):
    raw, cals = caller_raw(night), masters(night)
    before = {"raw": snapshot(raw), **{k: snapshot(c) for k, c in cals.items()}}
    raw_header = raw.header.copy()
    product = ccdflow.reduce_frame(raw, **cals)
    assert product.header["CF_BIAS"] == "DONE" and product.header["CF_FLAT"] == "DONE"
    assert product.data is not raw.data and not np.shares_memory(product.data, raw.data)
    unchanged(raw, before["raw"])
    assert raw.header == raw_header
    for kind, cal in cals.items():
        unchanged(cal, before[kind])
        assert not np.shares_memory(product.data, cal.data)
    assert any(in_place_writes)  # the run's own copy was written in place: the path is taken
    assert product.mask[6, 10] and product.flags[6, 10]  # the caller's mask, kept as MASKED


def test_the_same_frame_as_a_file_is_reduced_alike_and_its_masters_files_untouched(night):
    files = {k: night.master(k)["path"] for k in ("bias", "dark", "flat")}
    sums = {k: night.master(k)["sha256"] for k in files}
    raw_path = next(night.raw_dir.glob("*_sci_*.fits"))
    raw_bytes = raw_path.read_bytes()
    product = ccdflow.reduce_frame(raw_path, **files)
    same_product(product, ccdflow.reduce_frame(caller_raw(night, masked=False), **files), raw=False)
    assert raw_path.read_bytes() == raw_bytes
    from ccdflow.framework.io.fitsio import sha256_file

    assert {k: sha256_file(p) for k, p in files.items()} == sums


@pytest.mark.parametrize("as_file", [True, False])
def test_a_reduction_owning_its_pixels_makes_the_same_product(night, monkeypatch, as_file, in_place_writes):
    raw = next(night.raw_dir.glob("*_sci_*.fits")) if as_file else caller_raw(night)
    cals = masters(night)
    owned = ccdflow.reduce_frame(raw, **cals)
    assert any(in_place_writes)
    in_place_writes.clear()
    original = single.reduce_ccd

    def not_owned(*args, **kwargs):
        return original(*args, **{**kwargs, "owns_pixels": False})

    monkeypatch.setattr(single, "reduce_ccd", not_owned)
    fresh = ccdflow.reduce_frame(raw, **cals)
    assert in_place_writes and not any(in_place_writes)
    same_product(owned, fresh)


def test_a_flat_master_preprocessed_in_place_is_the_same_master(night, monkeypatch, in_place_writes):
    flats = sorted(night.raw_dir.glob("*_flat_*.fits"))
    cals = {k: night.master(k)["path"] for k in ("bias", "dark")}
    owned = ccdflow.build_master("flat", flats, **cals)
    assert any(in_place_writes)
    in_place_writes.clear()

    def not_owned(*args, **kwargs):
        return dataclasses.replace(StepContext(*args, **kwargs), owns_pixels=False)

    monkeypatch.setattr(preprocess, "StepContext", not_owned)
    fresh = ccdflow.build_master("flat", flats, **cals)
    assert in_place_writes and not any(in_place_writes)
    assert np.array_equal(owned.data, fresh.data, equal_nan=True)
    assert np.array_equal(owned.uncertainty.array, fresh.uncertainty.array, equal_nan=True)
    assert np.array_equal(owned.mask, fresh.mask)
    assert np.array_equal(owned.data, read_product(night.master("flat")["path"]).data, equal_nan=True)


@pytest.mark.parametrize("owns", [True, False])
def test_gain_multiplies_in_place_only_what_the_run_owns(owns):
    from ccdflow.plugins.steps.gain import GainCorrector
    from ccdflow.testing.fakes import fake_instrument, make_meta

    rng = np.random.default_rng(2)
    data = rng.normal(1000, 30, (32, 48)).astype(np.float32)
    error = rng.uniform(1, 3, data.shape).astype(np.float32)
    ccd = CCDData(data, unit="adu", header=fits.Header({"GAIN": 1.7}),
                  uncertainty=StdDevUncertainty(error, copy=False))
    before = snapshot(ccd)
    context = StepContext(make_meta(gain=1.7), fake_instrument(), owns_pixels=owns)
    out = GainCorrector().run(ccd, GainCorrector.Params(), {}, context)
    gain = np.float32(1.7)
    assert np.array_equal(out.data, before["data"] * gain)  # float32 either way: the same bits
    assert np.array_equal(out.uncertainty.array, before["uncert"] * gain)
    assert out.data.dtype == out.uncertainty.array.dtype == np.float32
    assert (out.data is data and out.uncertainty.array is error) == owns
    if not owns:
        unchanged(ccd, before)
