"""From expected electrons to raw counts: shot noise, charge bleeding, bias, read noise, ADC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAUSSIAN_ABOVE = 1000.0  # e-: above this a Poisson draw is a (much faster) rounded Gaussian


def photon_counts(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson electrons for an expectation map (float32 out, integer-valued)."""
    high = expected >= GAUSSIAN_ABOVE
    if not high.any():
        return rng.poisson(expected).astype(np.float32)
    out = np.empty(expected.shape, np.float32)
    lam = expected[high]
    out[high] = lam + np.sqrt(lam) * rng.standard_normal(lam.size, dtype=np.float32)
    low = ~high
    out[low] = rng.poisson(expected[low])
    return np.rint(out, out=out)


def _spill(column: np.ndarray, charge: float, full_well: float) -> None:
    """Pour `charge` into `column` (a view, nearest pixel first) up to full well; rest is lost."""
    room = np.clip(full_well - column, 0.0, None)
    filled = np.cumsum(room, dtype=np.float64)
    n_full = int(np.searchsorted(filled, charge, side="right"))
    column[:n_full] = np.maximum(column[:n_full], full_well)
    if n_full < column.size:
        column[n_full] += charge - (filled[n_full - 1] if n_full else 0.0)


def bleed(electrons: np.ndarray, full_well: float) -> np.ndarray:
    """Spill charge above full well up and down its column, in place; returns where it went.

    Charge is conserved except what runs off the chip's top or bottom edge.
    """
    before = electrons.copy()
    for x in np.flatnonzero((electrons > full_well).any(axis=0)):
        column = electrons[:, x]
        over = np.flatnonzero(column > full_well)
        # runs of consecutive over-full pixels
        starts = over[np.r_[True, np.diff(over) > 1]]
        stops = over[np.r_[np.diff(over) > 1, True]] + 1
        for start, stop in zip(starts, stops, strict=True):
            excess = float(column[start:stop].sum(dtype=np.float64) - full_well * (stop - start))
            if excess <= 0:  # already drained by a neighbouring run
                continue
            column[start:stop] = np.minimum(column[start:stop], full_well)
            _spill(column[stop:], excess / 2, full_well)
            _spill(column[:start][::-1], excess / 2, full_well)
    return (electrons > before) & (before < full_well)


@dataclass(frozen=True)
class Readout:
    """The electronics: gain, read noise and bias of each amplifier, ADC limits, non-linearity.

    With one linear amplifier the maps are None and scalars are used, so a default spec's
    pixels are exactly those of the one-amplifier simulator."""

    gain: float  # e-/ADU
    read_noise_adu: float
    saturation: float  # ADU a pixel at full well reads
    full_well: float  # e-
    x0: int = 0  # raw column of the data area's first column
    gain_map: np.ndarray | None = None  # e-/ADU over the data area
    noise_map: np.ndarray | None = None  # read noise in ADU over the raw frame
    nonlinearity: tuple[float, ...] = ()  # (k2, k3, ...): read = s + k2 s**2 + k3 s**3 ...


def nonlinear(signal: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """What the ADC reads (level-free ADU) for a true signal `signal` (ADU)."""
    s = signal.astype(np.float64)
    out = s.copy()
    for power, k in enumerate(coefficients, start=2):
        out += k * s**power
    return out.astype(np.float32)


def digitise(electrons: np.ndarray | None, bias: np.ndarray, offset: float, readout: Readout,
             rng: np.random.Generator) -> np.ndarray:
    """Raw uint16 frame: bias (+ frame offset) + read noise everywhere, signal in the data area.

    Pixels at full well read exactly `saturation`; nothing reads above it.
    """
    raw = rng.standard_normal(bias.shape, dtype=np.float32)
    if readout.noise_map is None:
        raw *= np.float32(readout.read_noise_adu)
    else:
        raw *= readout.noise_map
    raw += bias
    raw += np.float32(offset)
    if electrons is not None:
        data = raw[:, readout.x0: readout.x0 + electrons.shape[1]]
        gain = np.float32(readout.gain) if readout.gain_map is None else readout.gain_map
        signal = electrons / gain
        if readout.nonlinearity:
            signal = nonlinear(signal, readout.nonlinearity)
        data += signal
        data[electrons >= readout.full_well] = readout.saturation
    np.minimum(raw, np.float32(readout.saturation), out=raw)
    np.clip(raw, 0, 65535, out=raw)
    return np.rint(raw, out=raw).astype(np.uint16)
