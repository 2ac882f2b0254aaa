"""The radix-select median (issue 16) against numpy, bit for bit: ``median_of`` must return
exactly ``float(np.median(np.concatenate([v[np.isfinite(v) & ~m] ...])))`` (and
``np.nanmedian``'s value when only NaN is left out), whatever the values (signed zeros,
subnormals, infinities, duplicates, huge halves whose sum overflows), the counts (odd, even,
one, none), the views (strided, a Bayer green channel's two) and the masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ccdflow.framework.numerics.exact_median import median_of

SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38,
           3.4028235e38, -3.4028235e38, 3e38, 1.0, -1.0, 1.0000001, 0.99999994, 1000.0]


def bits(x: float) -> int:
    """A float's bits, NaN folded to one pattern: equality of these is equality bit for bit."""
    return -1 if np.isnan(x) else int(np.array(x, np.float64).view(np.int64))


def reference(views, masks=None, finite_only=True) -> float:
    """The statement of the task, spelt with numpy."""
    masks = masks or [None] * len(views)
    kept = [v[(np.isfinite(v) if finite_only else ~np.isnan(v)) & (True if m is None else ~m)]
            for v, m in zip(views, masks, strict=True)]
    values = np.concatenate(kept)
    if not finite_only:
        return float(np.nanmedian(np.concatenate([v.ravel() if m is None else v[~m]
                                                  for v, m in zip(views, masks, strict=True)])))
    return float(np.median(values)) if values.size else float("nan")


def assert_same(got: float, want: float) -> None:
    assert isinstance(got, float)
    assert bits(got) == bits(want), (got, want)


values = st.one_of(st.sampled_from(SPECIAL), st.floats(width=32, allow_subnormal=True),
                   st.integers(-3, 3).map(float), st.floats(-2.0**-130, 2.0**-130, width=32))
shapes = st.tuples(st.integers(1, 9), st.integers(1, 9))


@st.composite
def frames(draw, shape=shapes):
    """A float32 frame (its values from a small pool half the time: duplicates) and a mask or None."""
    shape = draw(shape)
    pool = draw(st.lists(values, min_size=1, max_size=6))
    elements = st.sampled_from(pool) if draw(st.booleans()) else values
    data = draw(hnp.arrays(np.float32, shape, elements=elements))
    mask = draw(st.none() | hnp.arrays(np.bool_, shape))
    return data, mask


@settings(max_examples=400, deadline=None)
@given(frames(), st.booleans())
def test_one_frame_equals_numpy(frame, finite_only):
    data, mask = frame
    masks = None if mask is None else [mask]
    assert_same(median_of([data], masks, finite_only=finite_only),
                reference([data], masks, finite_only))


@settings(max_examples=200, deadline=None)
@given(frames(st.tuples(st.integers(2, 14), st.integers(2, 14))), st.integers(0, 1), st.integers(0, 1),
       st.integers(1, 3), st.integers(1, 3))
def test_strided_view_equals_numpy(frame, row0, col0, row_step, col_step):
    data, mask = frame
    cut = (slice(row0, None, row_step), slice(col0, None, col_step))
    view = data[cut]
    masks = None if mask is None else [mask[cut]]
    assert_same(median_of([view], masks), reference([view], masks))


@settings(max_examples=200, deadline=None)
@given(frames(st.tuples(st.integers(2, 12), st.integers(2, 12))))
def test_green_channel_two_views_equal_numpy(frame):
    data, mask = frame
    cuts = [(slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))]
    views = [data[c] for c in cuts]
    masks = None if mask is None else [mask[c] for c in cuts]
    assert_same(median_of(views, masks), reference(views, masks))
    assert_same(median_of(views, [None, masks[1]] if masks else None),
                reference(views, [None, masks[1]] if masks else None))


@pytest.mark.parametrize(("values", "want"), [
    ([-0.0], 0.0),  # numpy's mean sums from +0.0: a zero median is +0.0, never -0.0
    ([-0.0, -0.0], 0.0),
    ([-0.0, 0.0, -0.0], 0.0),
    ([3e38, 3e38], np.inf),  # the float32 sum of the two middle values overflows, as in numpy
    ([-3e38, -3e38, 1.0, -3.4e38], -np.inf),
    ([1e-45, 0.0], 0.0),  # half the smallest subnormal rounds to even: 0
    ([1e-45, 1e-45], float(np.float32(1e-45))),
    ([2.0**-149, 2.0**-148], 2.0**-148),  # 1.5 smallest subnormals: to even, 2 of them
    ([1.0, 2.0], 1.5),  # two middle values in different top-16-bit bins
    ([1.0, 1.0000001], float(np.float32(np.float64(np.float32(1.0) + np.float32(1.0000001)) / 2))),
    ([np.nan, np.inf, -np.inf], np.nan),
    ([np.nan, 5.0, np.inf], 5.0),
    ([7.0], 7.0),
])
def test_numpys_arithmetic_at_the_edges(values, want):
    data = np.array([values], np.float32)
    assert_same(median_of([data]), want)
    assert_same(median_of([data]), reference([data]))


def test_nan_only_mode_keeps_infinities_as_nanmedian_does():
    data = np.array([[np.inf, np.inf, 1.0, np.nan]], np.float32)
    assert_same(median_of([data], finite_only=False), float(np.nanmedian(data)))
    assert median_of([data], finite_only=False) == np.inf
    both = np.array([[-np.inf, np.inf]], np.float32)
    assert np.isnan(median_of([both], finite_only=False))
    assert np.isnan(np.nanmedian(both))


def test_nothing_left_is_nan():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.isnan(median_of([data], [np.ones_like(data, bool)]))
    assert np.isnan(median_of([np.full((2, 2), np.nan, np.float32)]))
    assert np.isnan(median_of([np.empty((0, 3), np.float32)]))
    assert np.isnan(median_of([]))


def test_a_large_noisy_frame_with_mask():
    rng = np.random.default_rng(16)
    data = rng.normal(1000, 30, (512, 300)).astype(np.float32)
    data[rng.random(data.shape) < 0.01] = np.nan
    mask = rng.random(data.shape) < 0.05
    for views, masks in (([data], [mask]), ([data], None), ([data[:, :299]], [mask[:, :299]]),
                         ([data[0::2, 1::2], data[1::2, 0::2]], [mask[0::2, 1::2], mask[1::2, 0::2]])):
        assert_same(median_of(views, masks), reference(views, masks))


@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), ()])
def test_other_dimensions(shape):
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    assert_same(median_of([data]), float(np.median(data)))


@pytest.mark.parametrize("dtype", [np.float64, np.int16, np.uint16, np.float16])
def test_other_dtypes_fall_back_to_numpy(dtype):
    data = (np.random.default_rng(2).normal(size=(9, 8)) * 100).astype(dtype)
    mask = np.zeros(data.shape, bool)
    mask[::3] = True
    assert_same(median_of([data], [mask]), float(np.median(data[~mask])))


def test_the_input_is_left_as_it_was():
    data = np.random.default_rng(3).normal(size=(20, 20)).astype(np.float32)
    before = data.copy()
    median_of([data])
    np.testing.assert_array_equal(data, before)


def test_a_mask_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="mask shape"):
        median_of([np.zeros((2, 2), np.float32)], [np.zeros((2, 3), bool)])
    with pytest.raises(ValueError, match="one mask"):
        median_of([np.zeros((2, 2), np.float32)], [])


# -- where ccdflow uses it: the same numbers as the numpy code it replaced -------------------------

def noisy_flat(seed: int, shape=(64, 48)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 30, shape).astype(np.float32)
    data[rng.random(shape) < 0.02] = np.nan
    data[rng.random(shape) < 0.01] = np.inf
    data[::7, ::5] = np.float32(1000.0)  # duplicates at the median
    return data, rng.random(shape) < 0.05


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pattern", [None, "RGGB", "GBRG"])
def test_channel_levels_equal_numpys_median_of_the_good_pixels(seed, pattern):
    from ccdflow.framework.headers.bayer import CHANNELS, Mosaic, channel_levels

    data, mask = noisy_flat(seed, (63, 48) if seed % 2 else (64, 48))
    mosaic = Mosaic(pattern) if pattern else None
    good = np.isfinite(data) & ~mask
    cuts = {"": [(slice(None), slice(None))]} if mosaic is None else {c: mosaic.views(c) for c in CHANNELS}
    for m, keep in ((mask, good), (None, np.isfinite(data))):
        want = {c: float(np.median(np.concatenate([data[v][keep[v]] for v in views])))
                for c, views in cuts.items()}
        got = channel_levels(data, m, mosaic)
        assert [bits(got[c]) for c in cuts] == [bits(want[c]) for c in cuts]


def test_normalise_master_divides_by_nanmedian_of_the_unmasked_pixels():
    from astropy.io import fits

    from ccdflow.framework.builders.channels import normalise_master

    data, mask = noisy_flat(5)
    data[0, :3] = np.inf  # np.nanmedian keeps infinities: so must the normalisation
    error = np.ones_like(data)
    out, err = normalise_master(data, error, mask, fits.Header(), "test")
    norm = np.float32(np.nanmedian(data[~mask]))
    np.testing.assert_array_equal(out, data / norm)
    np.testing.assert_array_equal(err, error / norm)


@pytest.mark.parametrize("seed", range(4))
def test_master_stats_equal_the_numpy_formulation(seed):
    from ccdflow.framework.builders.master_header import _std, master_stats
    from ccdflow.testing.fakes import make_meta

    data, _ = noisy_flat(seed)
    if seed == 3:
        data = data[np.isfinite(data)]  # the all-finite path: no copy of the frame
    finite = data[np.isfinite(data)]
    median = float(np.median(finite))
    deviation = np.abs(finite - np.float32(median))
    mad = 1.4826 * float(np.median(deviation))
    clipped = finite[deviation < 3 * mad] if mad > 0 else finite
    stats = master_stats("bias", data, [make_meta()], [median])
    assert stats["CF_MED"][0] == round(median, 5)
    assert stats["CF_NOISE"][0] == round(_std(clipped), 5)
