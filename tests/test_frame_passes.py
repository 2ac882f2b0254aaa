"""The one-pass bookkeeping kernels (numerics/frame_passes.py) give numpy's answers exactly: the
spool's parking of a frame, the carried-error sum, the mask/bits agreement and the saturation
count are each checked against the numpy expression they replace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ccdflow.framework.numerics.frame_passes import add_finite, count_at_least, mask_agrees, park_frame

SPECIAL = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, 3.4e38, -3.4e38, 1e-45]

float32_frames = hnp.arrays(
    np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    elements=st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True),
                       st.sampled_from(SPECIAL)))


def park_reference(data: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """What the spool did with numpy before the kernel: (out, flags, n_nonfinite, n_bad)."""
    bad = ~np.isfinite(data)
    n_nonfinite = int(np.count_nonzero(bad))
    if mask is not None:
        bad |= mask
    out = np.where(bad, np.float32(0), data).astype(np.float32)
    return out, bad, n_nonfinite, int(np.count_nonzero(bad))


def bits(a: np.ndarray) -> np.ndarray:
    """The float32 bit patterns: -0.0 and 0.0 differ, NaN payloads compare."""
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# -- park_frame ---------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=float32_frames, use_mask=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_park_into_a_separate_out_is_numpys_answer(data, use_mask, seed):
    mask = np.random.default_rng(seed).random(data.shape) < 0.2 if use_mask else None
    original = data.copy()
    out = np.full(data.shape, 7.0, np.float32)  # anything: every pixel must be written
    flags = np.zeros(data.shape, bool)
    counts = park_frame(data, mask, out, flags)
    want_out, want_flags, n_nonfinite, n_bad = park_reference(data, mask)
    assert counts == (n_nonfinite, n_bad)
    assert np.array_equal(bits(out), bits(want_out))  # the others copied bit for bit (-0.0 too)
    assert np.array_equal(flags, want_flags)
    assert np.array_equal(bits(data), bits(original))  # the source is only read


@settings(max_examples=300, deadline=None)
@given(data=float32_frames, use_mask=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_park_in_place_is_numpys_answer(data, use_mask, seed):
    mask = np.random.default_rng(seed).random(data.shape) < 0.2 if use_mask else None
    want_out, want_flags, n_nonfinite, n_bad = park_reference(data, mask)
    flags = np.zeros(data.shape, bool)
    assert park_frame(data, mask, data, flags) == (n_nonfinite, n_bad)
    assert np.array_equal(bits(data), bits(want_out))
    assert np.array_equal(flags, want_flags)


@settings(max_examples=150, deadline=None)
@given(big=hnp.arrays(np.float32, (40, 61), elements=st.one_of(
    st.floats(width=32), st.sampled_from(SPECIAL))), use_mask=st.booleans())
def test_park_a_strided_view_into_a_separate_out(big, use_mask):
    data = big[::2, 1::3]
    assert not data.flags.c_contiguous
    mask = (np.arange(data.size).reshape(data.shape) % 5 == 0) if use_mask else None
    out = np.empty(data.shape, np.float32)
    flags = np.zeros(data.shape, bool)
    before = big.copy()
    want_out, want_flags, n_nonfinite, n_bad = park_reference(data, mask)
    assert park_frame(data, mask, out, flags) == (n_nonfinite, n_bad)
    assert np.array_equal(bits(out), bits(want_out))
    assert np.array_equal(flags, want_flags)
    assert np.array_equal(bits(big), bits(before))


def test_park_in_place_with_nothing_to_exclude_leaves_everything_as_it_was():
    data = np.random.default_rng(1).normal(100, 10, (64, 64)).astype(np.float32)
    data[3, 4] = -0.0
    before = data.copy()
    flags = np.zeros(data.shape, bool)
    assert park_frame(data, np.zeros(data.shape, bool), data, flags) == (0, 0)
    assert park_frame(data, None, data, flags) == (0, 0)
    assert np.array_equal(bits(data), bits(before))
    assert not flags.any()


def test_park_sets_only_the_excluded_flags_and_counts_nan_and_inf_once():
    data = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    data[0, 0], data[5, 6], data[63, 63] = np.nan, np.inf, -np.inf
    mask = np.zeros(data.shape, bool)
    mask[5, 6] = mask[10, 11] = True  # one masked pixel is also non-finite
    out = np.empty_like(data)
    flags = np.zeros(data.shape, bool)
    assert park_frame(data, mask, out, flags) == (3, 4)
    assert set(zip(*np.nonzero(flags), strict=True)) == {(0, 0), (5, 6), (10, 11), (63, 63)}
    assert np.all(out[flags] == 0) and np.array_equal(out[~flags], data[~flags])


# -- add_finite ---------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(values=hnp.arrays(np.float32, st.integers(1, 300), elements=st.one_of(
    st.floats(width=32), st.sampled_from(SPECIAL + [3.0e38, -3.0e38]))),
    scale=st.sampled_from([1.0, 0.5, 2.0, 1.7, 1e-3, 3.0, 1e30]), seed=st.integers(0, 2**32 - 1))
def test_add_finite_is_nan_to_num_of_the_float32_product(values, scale, seed):
    total = np.random.default_rng(seed).normal(0, 1e3, values.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        want = total + np.nan_to_num(values * np.float32(scale))
    before = values.copy()
    add_finite(total, values, scale)
    assert np.array_equal(total, want)
    assert np.array_equal(bits(values), bits(before))


def test_add_finite_on_a_2d_frame_and_the_default_scale():
    values = np.random.default_rng(2).normal(5, 2, (64, 80)).astype(np.float32)
    values[1, 2], values[3, 4], values[5, 6] = np.nan, np.inf, -np.inf
    total = np.full(values.shape, 0.25)
    want = total + np.nan_to_num(values)  # float64 + float32: the sum in float64
    add_finite(total, values)
    assert np.array_equal(total, want)
    assert total[3, 4] == 0.25 + float(np.finfo(np.float32).max)


# -- mask_agrees --------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(flags=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=20),
                        elements=st.sampled_from([0, 0, 0, 1, 2, 256, 32768, 65535])),
       flip=st.one_of(st.none(), st.integers(0, 10_000)))
def test_mask_agrees_is_array_equal(flags, flip):
    mask = flags != 0
    if flip is not None:
        mask.reshape(-1)[flip % mask.size] ^= True
    assert mask_agrees(mask, flags) == np.array_equal(mask, flags != 0)
    assert mask_agrees(mask, flags) == (flip is None)


def test_mask_agrees_sees_a_disagreement_in_the_last_pixel_and_in_views():
    flags = np.zeros((64, 64), np.uint16)
    flags[10, 10] = 4
    mask = flags != 0
    assert mask_agrees(mask, flags)
    mask[-1, -1] = True
    assert not mask_agrees(mask, flags)
    flags[-1, -1] = 1
    assert mask_agrees(mask, flags)
    flags[-1, -1] = 0  # the bit cleared, the mask still set
    assert not mask_agrees(mask, flags)
    # non-contiguous views compare element by element too
    big = np.zeros((64, 128), np.uint16)
    big[:, ::2] = flags
    view = big[:, ::2]
    assert not view.flags.c_contiguous
    assert mask_agrees(view != 0, view)
    wrong = view != 0
    wrong[-1, -1] = True
    assert not mask_agrees(wrong, view)
    assert mask_agrees(wrong[:, ::-1][:, ::-1], view) is False


# -- count_at_least -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=float32_frames, level=st.one_of(
    st.sampled_from([1000.1, 1000, 0, -0.0, 65535, 1e-45, 3.4e38, 65535.5]),
    st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-2**40, 2**40)))
def test_count_at_least_is_count_nonzero_for_float32(data, level):
    with np.errstate(invalid="ignore", over="ignore"):  # numpy warns of a level past float32's
        want = int(np.count_nonzero(data >= level))
        assert count_at_least(data, level) == want


def test_count_at_least_between_float32_values_and_with_nan_and_inf():
    level = 1000.1  # no float32 is 1000.1: numpy compares in float32 (NEP 50), and so must this
    data = np.array([[np.float32(1000.1), np.nextafter(np.float32(1000.1), np.float32(0))],
                     [np.nan, np.inf], [-np.inf, 1000.0]], np.float32)
    assert count_at_least(data, level) == int(np.count_nonzero(data >= level)) == 2
    assert count_at_least(data, 1000) == int(np.count_nonzero(data >= 1000)) == 4
    assert count_at_least(data, np.float64(1000.1)) == int(np.count_nonzero(data >= np.float64(1000.1)))
    assert count_at_least(data, np.float32(1000.1)) == 2


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint16, np.int64])
def test_count_at_least_on_other_types_is_numpys(dtype):
    rng = np.random.default_rng(7)
    data = (rng.random((64, 64)) * 70000).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        data[0, :5] = [np.nan, np.inf, -np.inf, 65535.0, 1000.1]
    for level in (1000.1, 1000, 65535, np.float64(1000.1), 0):
        assert count_at_least(data, level) == int(np.count_nonzero(data >= level))
    flat = np.asarray(data[0], np.float32)  # 1-D float32: numpy's path, same answer
    assert count_at_least(flat, 1000.1) == int(np.count_nonzero(flat >= 1000.1))
