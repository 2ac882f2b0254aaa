"""Fused per-pixel kernels for the science-frame arithmetic (numba, one thread, one pass).

Each numpy expression of the error propagation allocates and walks a whole 16 MB frame, so
the flat division with its uncertainty took ~10 passes (21 ms at 2048x2048); one compiled
loop reads each input once and writes each output once (~3 ms). Steps stay single-threaded:
parallelism comes from running frames side by side (the nightly pipeline's workers).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: No NaN/inf assumptions (masked pixels may hold NaN): only the reorderings that let LLVM
#: vectorise the loops. ``error_model="numpy"`` drops numba's ZeroDivisionError check, whose
#: branch kept every division loop scalar (flat 13 -> 4 ms); x/0 gives inf as in numpy.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _subtract(x, s1, c, s2, scale, out, out_std, with_std):  # pragma: no cover - compiled
    scale2 = scale * scale
    for i in range(x.size):
        out[i] = x[i] - scale * c[i]
    if with_std:
        for i in range(x.size):
            out_std[i] = np.sqrt(s1[i] * s1[i] + scale2 * s2[i] * s2[i])


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _subtract_new(x, c, s2, scale, out, out_std):  # pragma: no cover - compiled
    # the frame has no error yet (a raw frame's bias): its zeros are not read. Kept apart from
    # _subtract, whose compiled code (and so its rounding under fastmath) stays as it was
    scale2 = scale * scale
    for i in range(x.size):
        out[i] = x[i] - scale * c[i]
    for i in range(x.size):
        out_std[i] = np.sqrt(scale2 * s2[i] * s2[i])


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _divide(x, s1, f, s2, min_value, out, out_std, bad, with_std):  # pragma: no cover - compiled
    one = np.float32(1.0)
    if with_std:  # branch-free loops so they vectorise; NaN flats fail the >= test
        for i in range(x.size):
            fi = f[i]
            good = fi >= min_value
            inv = one / (fi if good else one)
            q = x[i] * inv
            out[i] = q
            bad[i] = np.uint8(not good)
            r1 = s1[i] * inv
            r2 = q * s2[i] * inv
            sd = np.sqrt(r1 * r1 + r2 * r2)
            out_std[i] = sd if good else s1[i]
    else:
        for i in range(x.size):
            fi = f[i]
            good = fi >= min_value
            out[i] = x[i] * (one / (fi if good else one))
            bad[i] = np.uint8(not good)
    n_bad = 0
    for i in range(x.size):
        n_bad += bad[i]
    return n_bad


@njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _deviation(x, gain, rn2, carried, out):  # pragma: no cover - compiled
    inv_g2 = np.float32(1.0) / (gain * gain)
    zero = np.float32(0.0)
    for i in range(x.size):
        e = x[i] * gain
        e = e if e > zero else zero
        out[i] = np.sqrt((e + rn2) * inv_g2 + carried[i] * carried[i])


def _flat32(a: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    """A contiguous 1-D float32 view (a copy only for another dtype or layout); zeros for None
    (calloc'ed: reading them costs no memory traffic)."""
    if a is None:
        return np.zeros(like.size, np.float32)
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def _target(a: np.ndarray | None, like: np.ndarray, in_place: bool) -> np.ndarray:
    """Where a kernel writes a plane: ``a`` itself when the caller lets it be overwritten and it
    is a writable, contiguous float32 array of the frame's shape; else a new array. Each kernel
    reads an element's inputs before writing that element, so reading and writing one array is
    safe, and a recipe that owns its frame allocates (and the kernel zero-fills) no new planes."""
    if (in_place and a is not None and a.dtype == np.float32 and a.shape == like.shape
            and a.flags.c_contiguous and a.flags.writeable):
        return a
    return np.empty(like.shape, np.float32)


def subtract_scaled_arrays(x: np.ndarray, s1: np.ndarray | None, c: np.ndarray, s2: np.ndarray | None,
                           scale: float, in_place: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(x - scale*c, sqrt(s1^2 + scale^2 s2^2)); the error is None when neither input has one.
    ``in_place``: ``x`` and ``s1`` may be overwritten with the results (see :func:`_target`)."""
    with_std = s1 is not None or s2 is not None
    out = _target(x, x, in_place)
    std = _target(s1, x, in_place) if with_std else None
    x1 = _flat32(x, x)
    if s1 is None and std is not None and s2 is not None:
        _subtract_new(x1, _flat32(c, x1), _flat32(s2, x1), np.float32(scale), out.reshape(-1),
                      std.reshape(-1))
    else:
        _subtract(x1, _flat32(s1, x1), _flat32(c, x1), _flat32(s2, x1), np.float32(scale),
                  out.reshape(-1), out.reshape(-1) if std is None else std.reshape(-1), with_std)
    return out, std


def divide_arrays(x: np.ndarray, s1: np.ndarray | None, f: np.ndarray, s2: np.ndarray | None,
                  min_value: float, in_place: bool = False
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
    """x / f where f >= min_value (elsewhere x kept and flagged); errors in astropy's form
    (s1/f)^2 + (q*s2/f)^2, which stays right where x == 0. Returns data, std, bad, count.
    ``in_place``: ``x`` and ``s1`` may be overwritten with the results (see :func:`_target`)."""
    with_std = s1 is not None or s2 is not None
    out = _target(x, x, in_place)
    std = _target(s1, x, in_place) if with_std else None
    bad = np.empty(x.shape, bool)
    x1 = _flat32(x, x)
    n_bad = _divide(x1, _flat32(s1, x1), _flat32(f, x1), _flat32(s2, x1), np.float32(min_value),
                    out.reshape(-1), out.reshape(-1) if std is None else std.reshape(-1),
                    bad.reshape(-1).view(np.uint8), with_std)
    return out, std, bad, int(n_bad)


def scale_array(x: np.ndarray, factor: np.float32, in_place: bool = False) -> np.ndarray:
    """``x * factor`` in float32 (``x`` cast first, as ``np.asarray(x, np.float32) * factor``);
    ``in_place``: into ``x`` itself under :func:`_target`'s rule."""
    return np.multiply(np.asarray(x, np.float32), factor, out=_target(x, x, in_place))


def deviation_array(x: np.ndarray, gain: float, read_noise_e: float,
                    carried: np.ndarray | None = None) -> np.ndarray:
    """sqrt(max(g*x, 0) + rn^2) / g, in the data's units, added in quadrature to ``carried``."""
    out = np.empty(x.shape, np.float32)
    x1 = _flat32(x, x)
    _deviation(x1, np.float32(gain), np.float32(read_noise_e) ** 2, _flat32(carried, x1), out.reshape(-1))
    return out


def warm_up() -> None:
    """Load every kernel's compiled float32 code (numba's cache, ~0.3 s the first time in a
    process) on a few pixels: a driver that forks workers calls it once, and they inherit it
    instead of each loading it on its first frame."""
    x = np.ones(8, np.float32)
    subtract_scaled_arrays(x, x, x, x, 1.0)
    subtract_scaled_arrays(x, None, x, None, 1.0)
    subtract_scaled_arrays(x, None, x, x, 1.0)
    divide_arrays(x, x, x, x, 0.5)
    divide_arrays(x, None, x, None, 0.5)
    deviation_array(x, 1.0, 1.0, x)
