"""The one-pass median (numerics/median_bracket.py, issue 16) against numpy, bit for bit: with
the size threshold lifted, every frame the radix tests draw goes through the sample's bracket;
real-sized frames of many kinds (normal, integer-valued with heavy ties, constant, signed zeros,
NaN and inf, masked, Bayer channels, several views, strided and reversed) must take the one
pass and give numpy's value; and when the sample misleads (an adversarial frame built on the
sampled positions) or the buffer is too small, the two-pass path must give it still."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccdflow.framework.numerics import exact_median, median_bracket
from ccdflow.framework.numerics.exact_median import median_of
from tests.test_exact_median import assert_same, frames, reference

GREEN = [(slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))]


@pytest.fixture
def one_pass(monkeypatch):
    """Every float32 call tries the one pass; the list gets what each try returned (None: the
    two passes ran)."""
    outcomes: list = []
    real = median_bracket.middle_keys

    def spy(*args):
        outcomes.append(real(*args))
        return outcomes[-1]

    monkeypatch.setattr(exact_median, "_ONE_PASS_FROM", 0)
    monkeypatch.setattr(exact_median, "middle_keys", spy)
    return outcomes


# -- small frames of every kind, through the bracket ----------------------------------------------
# (the fixture only lifts the threshold and records: it need not be reset between examples)

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames(), st.booleans())
def test_small_frames_equal_numpy(one_pass, frame, finite_only):
    data, mask = frame
    masks = None if mask is None else [mask]
    assert_same(median_of([data], masks, finite_only=finite_only), reference([data], masks, finite_only))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames(st.tuples(st.integers(2, 14), st.integers(2, 14))), st.integers(0, 1), st.integers(0, 1),
       st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_small_strided_views_equal_numpy(one_pass, frame, row0, col0, row_step, col_step, finite_only):
    data, mask = frame
    cut = (slice(row0, None, row_step), slice(col0, None, col_step))
    masks = None if mask is None else [mask[cut]]
    assert_same(median_of([data[cut]], masks, finite_only=finite_only),
                reference([data[cut]], masks, finite_only))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames(st.tuples(st.integers(2, 12), st.integers(2, 12))))
def test_small_green_channels_equal_numpy(one_pass, frame):
    data, mask = frame
    views = [data[c] for c in GREEN]
    masks = None if mask is None else [mask[c] for c in GREEN]
    assert_same(median_of(views, masks), reference(views, masks))


# -- real sizes: the one pass is taken, and right ------------------------------------------------

def kind(name: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "normal":
        return rng.normal(20000, 150, shape).astype(np.float32)
    if name == "integers":  # raw ADU: a few values hold most pixels, ties at the median
        return rng.poisson(3, shape).astype(np.float32)
    if name == "constant":
        return np.full(shape, 7.25, np.float32)
    if name == "zeros":  # -0.0 and +0.0 at the middle, a few values either side
        data = np.where(rng.random(shape) < 0.5, np.float32(-0.0), np.float32(0.0)).astype(np.float32)
        data[rng.random(shape) < 0.1] = 1.0
        data[rng.random(shape) < 0.1] = -1.0
        return data
    if name == "skewed":  # a long tail and negatives
        return (rng.lognormal(0, 2, shape) - 1).astype(np.float32)
    if name == "specials":
        data = rng.normal(0, 1, shape).astype(np.float32)
        for value, share in ((np.nan, 0.05), (np.inf, 0.2), (-np.inf, 0.1), (1e-45, 0.02)):
            data[rng.random(shape) < share] = value
        return data
    raise ValueError(name)


KINDS = ["normal", "integers", "constant", "zeros", "skewed", "specials"]


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("shape", [(601, 480), (480, 601), (1, 300_001)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("finite_only", [True, False])
def test_real_sized_frames_take_the_one_pass_and_equal_numpy(one_pass, name, shape, masked, finite_only):
    data = kind(name, shape, len(one_pass) + shape[0])
    masks = [np.random.default_rng(1).random(shape) < 0.05] if masked else None
    assert_same(median_of([data], masks, finite_only=finite_only), reference([data], masks, finite_only))
    assert one_pass[-1] is not None


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("shape", [(640, 480), (641, 479), (2, 131_073)])
@pytest.mark.parametrize("masked", [False, True])
def test_bayer_channels_equal_numpy(one_pass, name, shape, masked):
    data = kind(name, shape, shape[1])
    mask = np.random.default_rng(2).random(shape) < 0.05
    for cuts in ([GREEN[0]], [GREEN[1]], GREEN, [(slice(0, None, 2), slice(0, None, 2))],
                 [(slice(1, None, 2), slice(1, None, 2))]):
        views = [data[c] for c in cuts]
        masks = [mask[c] for c in cuts] if masked else None
        assert_same(median_of(views, masks), reference(views, masks))
        assert one_pass[-1] is not None
    if masked:  # one view masked, the other not
        views = [data[c] for c in GREEN]
        assert_same(median_of(views, [None, mask[GREEN[1]]]), reference(views, [None, mask[GREEN[1]]]))


def test_other_layouts_equal_numpy(one_pass):
    """Reversed, column-strided by three, Fortran-ordered, a mask laid out unlike its view, a
    3-D array: read as they lie (copied a chunk at a time) or row by row."""
    data = kind("normal", (700, 600), 3)
    mask = np.random.default_rng(4).random(data.shape) < 0.05
    fortran = np.asfortranarray(data)
    cases = [([data[::-1, ::-1]], [mask[::-1, ::-1]]), ([data[:, ::3]], [mask[:, ::3]]),
             ([fortran], [mask]), ([data[:, 1::2]], [np.ascontiguousarray(mask[:, 1::2])]),
             ([data[::-2, 1::2]], [mask[::-2, 1::2]]), ([data.reshape(7, 100, 600)], None),
             ([data, data[:300, :40]], [mask, None])]
    for views, masks in cases:
        assert_same(median_of(views, masks), reference(views, masks))
        assert one_pass[-1] is not None


# -- the two-pass path when the bracket fails: still numpy's value ---------------------------------

def sampled_positions(shape: tuple[int, int]) -> np.ndarray:
    """The flat indices the sample reads in a frame of ``shape`` (one part): found by sampling
    a frame whose values are their own indices."""
    index = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)
    keys = np.empty(median_bracket._SAMPLE, np.int64)
    m = median_bracket._sample(index.view(np.uint32), np.zeros((1, 1), bool), False,
                               *exact_median._FINITE, median_bracket._SAMPLE, keys, 0)
    bits = (keys[:m] ^ exact_median._SIGN).astype(np.uint32)  # positive values' keys
    return bits.view(np.float32).astype(np.int64)


def test_a_misleading_sample_falls_back_to_two_passes(one_pass):
    shape = (640, 512)
    data = kind("normal", shape, 5)
    flat = data.reshape(-1)
    flat[sampled_positions(shape)] = -1000.0  # every sampled value far below every other one
    assert_same(median_of([data]), reference([data]))
    assert one_pass[-1] is None  # the middle was outside the bracket
    assert_same(median_of([data], finite_only=False), reference([data], finite_only=False))


def test_an_overflowing_buffer_falls_back_to_two_passes(one_pass, monkeypatch):
    monkeypatch.setattr(median_bracket, "_SLACK", 0.0)  # room for two chunks: ~5 % of 1M is more
    data = kind("normal", (1024, 1024), 6)
    mask = np.random.default_rng(6).random(data.shape) < 0.05
    views = [data[c] for c in GREEN]
    for vs, ms in (([data], [mask]), (views, [mask[c] for c in GREEN])):
        assert_same(median_of(vs, ms), reference(vs, ms))
        assert one_pass[-1] is None


def test_a_bracket_too_wide_falls_back(one_pass):
    """A frame of NaN but for a few values: the sample holds few, its bracket most of them."""
    data = np.full((400, 400), np.nan, np.float32)
    data[::40, ::40] = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert_same(median_of([data]), reference([data]))
    assert one_pass[-1] is None
    assert np.isnan(median_of([np.full((400, 400), np.nan, np.float32)]))


def test_the_frames_ccdflow_reduces_take_the_one_pass_by_default():
    data = kind("normal", (512, 512), 7)
    calls = []
    real = exact_median.middle_keys
    exact_median.middle_keys = lambda *args: calls.append(real(*args)) or calls[-1]
    try:
        assert_same(median_of([data]), reference([data]))
        median_of([data[:256, :256]])  # 64k values: below the threshold, two passes
    finally:
        exact_median.middle_keys = real
    assert len(calls) == 1 and calls[0] is not None


def test_warm_up_runs():
    exact_median.warm_up()


def test_a_narrow_bracket_from_a_small_sample_is_right_or_falls_back(one_pass, monkeypatch):
    """No margin and 64 samples: the middle lands below, inside and above the bracket in turn."""
    monkeypatch.setattr(median_bracket, "_SAMPLE", 64)
    monkeypatch.setattr(median_bracket, "_Z", 0.0)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        data = rng.normal(0, 1, (300, 300 + seed)).astype(np.float32)
        if seed % 3 == 0:
            data = np.round(data * 2).astype(np.float32)  # ties at the bracket's ends
        mask = rng.random(data.shape) < 0.1 if seed % 2 else None
        views, masks = ([data[c] for c in GREEN], None if mask is None else [mask[c] for c in GREEN]) \
            if seed % 4 == 1 else ([data], None if mask is None else [mask])
        assert_same(median_of(views, masks), reference(views, masks))
    assert any(o is None for o in one_pass) and any(o is not None for o in one_pass)
