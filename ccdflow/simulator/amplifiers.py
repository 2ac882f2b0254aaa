"""Where each readout amplifier's pixels lie in a raw frame, and what each one adds to them.

One amplifier (the default): `prescan` columns (none by default), the data area, then
`overscan` columns on the right, the amplifier at the data's first column (its start-of-line
ramp and its glow are there).

Two amplifiers split the data area into a left and a right half; four into quadrants. Each
reads towards its own outer side: the overscan columns are split into a prescan of
`overscan / 2` columns on the left (amplifiers A, C) and on the right (B, D), and each
amplifier's overscan is its own rows of the prescan on its side. Amplifier A holds the first
rows and columns (raw [1, 1]); C and D, with four, the upper rows. The reduction describes
this with `geometry.amplifiers` sections (see `instrument_yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccdflow.simulator.spec import SimulationSpec

NAMES = "ABCD"
RAMP = (6.0, 4.0)  # start-of-line ramp of an amplifier: ADU at its first column, e-folding px


@dataclass(frozen=True)
class AmpRegion:
    """One amplifier's pixels (0-based, half-open slices) and its electronics."""

    name: str
    rows: slice  # raw rows = data-area rows
    data_cols: slice  # raw columns of its data
    overscan_cols: slice  # raw columns of its overscan (its own rows only)
    area_cols: slice  # the same data columns in data-area coordinates
    corner: tuple[int, int]  # data-area pixel next to the amplifier (glow peaks here)
    gain: float  # e-/ADU
    read_noise: float  # e-
    bias_offset: float  # ADU, added to bias_level

    @property
    def area(self) -> tuple[slice, slice]:
        return self.rows, self.area_cols

    def section(self, cols: slice) -> str:
        """A FITS section (1-based, x first) of these rows and `cols`."""
        return f"[{cols.start + 1}:{cols.stop},{self.rows.start + 1}:{self.rows.stop}]"


def data_x0(spec: SimulationSpec) -> int:
    """Raw column of the data area's first column."""
    return spec.prescan if spec.amplifiers == 1 else spec.overscan // 2


def amp_regions(spec: SimulationSpec) -> list[AmpRegion]:
    """The amplifiers of `spec`, A first."""
    ny, nx = spec.shape
    n = spec.amplifiers
    offsets = spec.amp_bias_offsets or (0.0,) * n
    if n == 1:
        p = spec.prescan
        return [AmpRegion("A", slice(0, ny), slice(p, p + nx), slice(p + nx, p + nx + spec.overscan),
                          slice(0, nx), (0, 0), spec.amp_gain(0), spec.amp_read_noise(0),
                          offsets[0])]
    half, x0 = nx // 2, data_x0(spec)
    row_bands = [slice(0, ny)] if n == 2 else [slice(0, ny // 2), slice(ny // 2, ny)]
    out = []
    for band, rows in enumerate(row_bands):
        corner_y = 0 if band == 0 else ny - 1
        for side in (0, 1):
            index = 2 * band + side
            area = slice(0, half) if side == 0 else slice(half, nx)
            overscan = slice(0, x0) if side == 0 else slice(x0 + nx, 2 * x0 + nx)
            out.append(AmpRegion(
                NAMES[index], rows, slice(x0 + area.start, x0 + area.stop), overscan, area,
                (corner_y, 0 if side == 0 else nx - 1), spec.amp_gain(index),
                spec.amp_read_noise(index), offsets[index]))
    return out


def amp_bias(spec: SimulationSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bias structure of several amplifiers (ADU, whole raw frame, bias_level excluded): the
    shared row term, the column pattern, each amplifier's ramp from its own first read column
    and its level offset over its data and overscan."""
    bias = rows[:, None] + cols[None, :]
    for amp in amp_regions(spec):
        ncols = amp.data_cols.stop - amp.data_cols.start
        ramp = RAMP[0] * np.exp(-np.arange(ncols) / RAMP[1])
        if amp.corner[1] != 0:  # reads from the right edge
            ramp = ramp[::-1]
        bias[amp.rows, amp.data_cols] += ramp[None, :]
        bias[amp.rows, amp.data_cols] += amp.bias_offset
        bias[amp.rows, amp.overscan_cols] += amp.bias_offset
    return bias


def glow_map(spec: SimulationSpec) -> np.ndarray:
    """Amplifier glow (e-/s at ref_temperature) over the data area: `amp_glow` at each
    amplifier's corner pixel, falling as exp(-distance / amp_glow_scale) inside its region."""
    out = np.zeros(spec.shape, np.float64)
    if spec.amp_glow <= 0:
        return out.astype(np.float32)
    ny, nx = spec.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    for amp in amp_regions(spec):
        distance = np.hypot(yy - amp.corner[0], xx - amp.corner[1])
        glow = spec.amp_glow * np.exp(-distance / spec.amp_glow_scale)
        out[amp.area] += glow[amp.area]
    return out.astype(np.float32)


def per_amp(spec: SimulationSpec, value: str, shape: tuple[int, int], raw: bool) -> np.ndarray:
    """`value` ('gain' or 'read_noise') of each amplifier as a map over the raw frame (`raw`)
    or the data area."""
    out = np.zeros(shape, np.float32)
    for amp in amp_regions(spec):
        v = np.float32(getattr(amp, value))
        if raw:
            out[amp.rows, amp.data_cols] = v
            out[amp.rows, amp.overscan_cols] = v
        else:
            out[amp.area] = v
    return out
