"""The science kernels writing into the frame they are given (``in_place``, a recipe that owns its
frame): the same bits as into new arrays, and never into an array they may not overwrite; a frame
without an error of its own (s1 None) gets the bias's scaled error from its own kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ccdflow.framework.numerics import kernels
from ccdflow.framework.numerics.kernels import divide_arrays, subtract_scaled_arrays

SHAPE = (64, 96)


def planes(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(1000, 50, SHAPE).astype(np.float32)
    x[1, 1], x[2, 2] = np.nan, np.inf
    f = rng.normal(1.0, 0.05, SHAPE).astype(np.float32)
    f[3, 3], f[4, 4] = 0.01, np.nan  # below min_value: flagged and left undivided
    return {"x": x, "s1": rng.uniform(1, 5, SHAPE).astype(np.float32),
            "c": rng.normal(300, 3, SHAPE).astype(np.float32),
            "s2": rng.uniform(0.1, 1, SHAPE).astype(np.float32), "f": f,
            "sf": rng.uniform(0.001, 0.01, SHAPE).astype(np.float32)}


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("with_s1", [True, False])
@pytest.mark.parametrize("with_s2", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.37, 2.5])
def test_subtract_in_place_writes_the_same_bits_into_x_and_s1(with_s1, with_s2, scale):
    p = planes()
    s1, s2 = (p["s1"] if with_s1 else None), (p["s2"] if with_s2 else None)
    want, want_std = subtract_scaled_arrays(p["x"], s1, p["c"], s2, scale)
    assert want is not p["x"]
    x = p["x"].copy()
    s1_own = None if s1 is None else s1.copy()
    c_before, s2_before = p["c"].copy(), None if s2 is None else s2.copy()
    out, std = subtract_scaled_arrays(x, s1_own, p["c"], s2, scale, in_place=True)
    assert out is x and same_bits(out, want)
    if want_std is None:
        assert std is None
    else:
        assert same_bits(std, want_std)
        if s1_own is not None:
            assert std is s1_own  # the frame's error plane holds the new error
    assert same_bits(p["c"], c_before)  # the calibration is never written
    if s2 is not None:
        assert same_bits(s2, s2_before)


@pytest.mark.parametrize("with_s1", [True, False])
@pytest.mark.parametrize("with_s2", [True, False])
def test_divide_in_place_writes_the_same_bits_into_x_and_s1(with_s1, with_s2):
    p = planes(1)
    s1, s2 = (p["s1"] if with_s1 else None), (p["sf"] if with_s2 else None)
    want, want_std, want_bad, want_n = divide_arrays(p["x"], s1, p["f"], s2, 0.1)
    x = p["x"].copy()
    s1_own = None if s1 is None else s1.copy()
    f_before = p["f"].copy()
    out, std, bad, n_bad = divide_arrays(x, s1_own, p["f"], s2, 0.1, in_place=True)
    assert out is x and same_bits(out, want)
    assert np.array_equal(bad, want_bad) and n_bad == want_n == 2
    assert bad[3, 3] and bad[4, 4] and out[3, 3] == p["x"][3, 3]  # kept undivided
    if want_std is None:
        assert std is None
    else:
        assert same_bits(std, want_std)
        if s1_own is not None:
            assert std is s1_own
    assert same_bits(p["f"], f_before)


def not_overwritable() -> list[tuple[str, np.ndarray]]:
    p = planes(2)
    read_only = p["x"].copy()
    read_only.flags.writeable = False
    big = np.zeros((SHAPE[0], 2 * SHAPE[1]), np.float32)
    big[:, ::2] = p["x"]
    return [("read-only", read_only), ("strided", big[:, ::2]),
            ("float64", p["x"].astype(np.float64)), ("fortran", np.asfortranarray(p["x"]))]


@pytest.mark.parametrize("case", range(4), ids=["read-only", "strided", "float64", "fortran"])
def test_in_place_never_writes_an_x_it_may_not(case):
    name, x = not_overwritable()[case]
    p = planes(2)
    s1 = p["s1"].copy()
    s1.flags.writeable = False
    before, s1_before = x.copy(), s1.copy()
    want, want_std = subtract_scaled_arrays(np.asarray(x, np.float32), s1, p["c"], p["s2"], 1.5)
    out, std = subtract_scaled_arrays(x, s1, p["c"], p["s2"], 1.5, in_place=True)
    assert out is not x and std is not s1, name
    assert out.flags.c_contiguous and out.dtype == np.float32
    assert same_bits(out, want) and same_bits(std, want_std)
    dq, dstd, dbad, _ = divide_arrays(x, s1, p["f"], p["sf"], 0.1, in_place=True)
    assert dq is not x and dstd is not s1
    wq, wstd, wbad, _ = divide_arrays(np.asarray(x, np.float32), s1, p["f"], p["sf"], 0.1)
    assert same_bits(dq, wq) and same_bits(dstd, wstd) and np.array_equal(dbad, wbad)
    assert np.array_equal(x, before, equal_nan=True) and same_bits(s1, s1_before)


def old_error(s2: np.ndarray, scale: float) -> np.ndarray:
    """The frame without an error went through the general kernel with zeros for its error."""
    n = s2.size
    out, std = np.empty(n, np.float32), np.empty(n, np.float32)
    zeros = np.zeros(n, np.float32)
    kernels._subtract(zeros, zeros, zeros, np.ascontiguousarray(s2).reshape(-1), np.float32(scale),
                      out, std, True)
    return std.reshape(s2.shape)


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


@settings(max_examples=200, deadline=None)
@given(s2=hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(2.0**-20, 2.0**20, width=32)),
       scale=st.one_of(st.just(1.0), st.floats(1e-3, 1e3)), in_place=st.booleans())
def test_a_frame_without_error_gets_the_scaled_calibration_error(s2, scale, in_place):
    x = np.linspace(0, 1000, s2.size, dtype=np.float32)
    c = np.full(s2.shape, 3.0, np.float32)
    out, std = subtract_scaled_arrays(x, None, c, s2, scale, in_place=in_place)
    assert std is not None and std is not x and out is (x if in_place else out)
    reference = old_error(s2, scale)
    numpy_way = np.sqrt(np.float32(scale) ** 2 * s2 * s2)
    assert ulps(std, reference).max() <= 1 and ulps(std, numpy_way).max() <= 1
    if scale == 1.0:
        assert same_bits(std, reference) and same_bits(std, s2)  # sqrt(s2*s2) is s2 exactly


def test_the_separate_kernel_is_used_only_without_s1(monkeypatch):
    calls = []
    original = kernels._subtract_new

    def counting(*args):
        calls.append(len(args))
        return original(*args)

    monkeypatch.setattr(kernels, "_subtract_new", counting)
    p = planes(3)
    subtract_scaled_arrays(p["x"], None, p["c"], p["s2"], 1.0)
    assert len(calls) == 1
    subtract_scaled_arrays(p["x"], p["s1"], p["c"], p["s2"], 1.0)
    subtract_scaled_arrays(p["x"], None, p["c"], None, 1.0)
    subtract_scaled_arrays(p["x"], p["s1"], p["c"], None, 1.0)
    assert len(calls) == 1
