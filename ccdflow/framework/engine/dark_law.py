"""How a detector's dark current follows its temperature: the law a master dark taken at one
temperature is scaled by to another.

Two laws, one per instrument (its ``caldb: dark: temperature_law:``):

- ``arrhenius``: ``rate ~ T**p * exp(-Eg / (2 k T))``, T in kelvin, Eg the band gap in eV,
  p 1.5 unless ``temperature_power`` says otherwise. Thermal generation through mid-gap states
  in the depletion region (Shockley-Read-Hall), the dark current of a working cooled CCD or
  CMOS sensor, is proportional to the intrinsic carrier density n_i ~ T**1.5 exp(-Eg / 2kT)
  (Janesick 2001, Scientific CCDs, ch. 7). Diffusion current (~ n_i**2 ~ T**3 exp(-Eg / kT))
  matters only near room temperature. The exponential sets the slope: with silicon's 1.12 eV
  the rate doubles every 6.5 C at -20 C, 8.6 C at +20 C and 3.1 C at -100 C, which is why one
  doubling interval cannot serve every camera. The power of T matters less (T**3 instead of
  T**1.5 changes a 1.8 C factor by 1.05 %) but a deep night with a strong dark measures it,
  so a camera whose law was measured with another power (Hopkinson's MERIS CCDs: T**2) says
  so with ``temperature_power``.
- ``doubling``: ``rate ~ 2 ** (T / doubling_c)``, a fixed interval measured for one camera
  (the textbook 5-7 C; BANZAI's ``exp(DARKCOEF * dT)`` is this law).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from ccdflow.framework.engine.header_spec import Strict

BOLTZMANN_EV = 8.617333262e-5  # eV/K (CODATA 2018)
KELVIN = 273.15
#: The band gap of silicon at room temperature (1.12 eV; 1.13 eV at -20 C by Varshni's fit).
SILICON_BAND_GAP = 1.12
#: The power of T of depletion (generation) dark current, n_i ~ T**1.5 exp(-Eg / 2kT).
DEPLETION_POWER = 1.5


class TemperatureLaw(Strict):
    """The dark current's temperature law: ``arrhenius`` with ``band_gap_ev`` or ``doubling``
    with ``doubling_c``."""

    law: Literal["arrhenius", "doubling"] = Field(
        description="'arrhenius': rate ~ T**temperature_power exp(-band_gap_ev / 2kT), T in kelvin; "
        "'doubling': rate x2 every doubling_c degrees.")
    band_gap_ev: float | None = Field(
        None, gt=0, le=5, description="Band gap in eV of the arrhenius law (silicon: 1.12).")
    doubling_c: float | None = Field(
        None, gt=0, description="Temperature rise in C that doubles the dark current (doubling law).")
    temperature_power: float | None = Field(
        None, ge=0, le=4, description="Power of T before the exponential of the arrhenius law "
        "(None: 1.5, depletion current; 2 or 3 where a camera's measured law says so).")
    measure: bool = Field(
        True, description="Fit the law's parameter (band gap or doubling interval) to the dark "
        "rates of the caldb's good master darks of the frame's setup when they span at least "
        "measure_min_span_c; the given parameter is used otherwise.")
    measure_min_span_c: float = Field(
        3.0, gt=0, description="Smallest temperature span of master darks to fit the law from.")
    measured: str | None = Field(
        None, description="Set by ccdflow, not in YAMLs: the master darks the parameter was "
        "fitted to (recorded in receipts and products).")

    @model_validator(mode="after")
    def _one_parameter(self) -> TemperatureLaw:
        """Each law takes its own parameter and only it: a doubling interval given to an
        Arrhenius law would be silently ignored."""
        need, other = ("band_gap_ev", "doubling_c") if self.law == "arrhenius" else (
            "doubling_c", "band_gap_ev")
        if getattr(self, need) is None:
            raise ValueError(f"temperature_law {self.law!r} needs {need}")
        if getattr(self, other) is not None:
            raise ValueError(f"temperature_law {self.law!r} takes {need}, not {other}")
        if self.law == "doubling" and self.temperature_power is not None:
            raise ValueError("temperature_law 'doubling' takes no temperature_power")
        return self

    @property
    def power(self) -> float:
        """The power of T of the arrhenius law (1.5 unless the camera's law says otherwise)."""
        return DEPLETION_POWER if self.temperature_power is None else self.temperature_power

    def factor(self, to_c: float, from_c: float) -> float:
        """Dark rate at ``to_c`` divided by the rate at ``from_c`` (both Celsius)."""
        if self.law == "doubling":
            assert self.doubling_c is not None
            return float(2.0 ** ((to_c - from_c) / self.doubling_c))
        assert self.band_gap_ev is not None
        t1, t0 = to_c + KELVIN, from_c + KELVIN
        if t1 <= 0 or t0 <= 0:
            raise ValueError(f"temperature below absolute zero: {to_c} C or {from_c} C")
        exponent = -self.band_gap_ev / (2 * BOLTZMANN_EV) * (1 / t1 - 1 / t0)
        return float((t1 / t0) ** self.power * math.exp(exponent))

    @property
    def parameter(self) -> float:
        """The law's one parameter: the band gap (eV) or the doubling interval (C)."""
        value = self.band_gap_ev if self.law == "arrhenius" else self.doubling_c
        assert value is not None
        return value

    @property
    def unit(self) -> str:
        return "eV" if self.law == "arrhenius" else "C"

    def describe(self) -> str:
        """``arrhenius Eg=1.12 eV`` or ``doubling every 6 C``, and what it was measured from."""
        text = (f"arrhenius T^{self.power:g} Eg={self.parameter:.4g} eV" if self.law == "arrhenius"
                else f"doubling every {self.parameter:.4g} C")
        return text if self.measured is None else f"{text}, measured from {self.measured}"


#: Fitted parameters outside these are not physical for a silicon sensor (a bias residual or a
#: light leak in one master, not the law): the configured parameter is kept.
PLAUSIBLE = {"arrhenius": (0.4, 2.0), "doubling": (2.0, 20.0)}


def fit_law(law: TemperatureLaw, points: list[tuple[float, float, str]]) -> TemperatureLaw | None:
    """``law`` with its parameter fitted to ``(temperature C, dark rate, label)`` points, or None
    when they span less than ``law.measure_min_span_c``, a rate is not positive, or the fit is
    not physical (:data:`PLAUSIBLE`).

    A least-squares line through ln(rate) - p ln(T) against 1/T gives the band gap (slope
    -Eg / 2k); through ln(rate) against T the doubling interval (slope ln 2 / doubling_c). Why
    measure: a camera's law is rarely known and the default band gap can be off by the few
    percent that, on a faint sky, are several standard errors (a 6 C doubling camera reduced
    with silicon's 1.12 eV kept 5 SE on 120 s frames 1.8 C warmer than their darks)."""
    good = [(t, r, label) for t, r, label in points if r > 0]
    if len(good) < 2 or len(good) < len(points):
        return None
    temps = [t for t, _, _ in good]
    if max(temps) - min(temps) < law.measure_min_span_c:
        return None
    if law.law == "arrhenius":
        xs = [1.0 / (t + KELVIN) for t in temps]
        ys = [math.log(r) - law.power * math.log(t + KELVIN) for t, r, _ in good]
    else:
        xs, ys = temps, [math.log(r) for _, r, _ in good]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    if law.law == "arrhenius":
        value, key = -2 * BOLTZMANN_EV * slope, "band_gap_ev"
    else:
        value, key = (math.log(2) / slope if slope > 0 else math.inf), "doubling_c"
    low, high = PLAUSIBLE[law.law]
    if not low <= value <= high:
        return None
    labels = ", ".join(label for _, _, label in good)
    return law.model_copy(update={key: round(value, 4), "measured": labels})


#: Generic cameras: silicon's band gap (see the module docstring for why Arrhenius).
DEFAULT_LAW = TemperatureLaw(law="arrhenius", band_gap_ev=SILICON_BAND_GAP)


@dataclass(frozen=True)
class TemperatureScaling:
    """The factor a master dark is scaled by for temperature, and what decided it. ``factor`` is
    1 with a ``reason`` when it could not be applied: that is recorded, never silent."""

    factor: float
    law: TemperatureLaw | None
    frame_c: float | None
    dark_c: float | None
    reason: str | None = None

    def describe(self) -> str:
        """One line for HISTORY and receipts."""
        if self.reason is not None:
            return f"not scaled for temperature: {self.reason}"
        assert self.law is not None and self.frame_c is not None and self.dark_c is not None
        return (f"temperature x{self.factor:.5g} ({self.law.describe()}: dark {self.dark_c:.2f} C "
                f"-> frame {self.frame_c:.2f} C)")


def temperature_scaling(law: TemperatureLaw | None, frame_c: float | None,
                        dark_c: float | None) -> TemperatureScaling:
    """The temperature factor from a master dark at ``dark_c`` to a frame at ``frame_c``; 1 and
    the reason when the law or a temperature is missing. Used by the dark step and the caldb
    alike, so the factor a receipt shows is the factor applied."""
    if law is None:
        return TemperatureScaling(1.0, None, frame_c, dark_c,
                                  "no temperature law (the instrument's caldb.dark.temperature_law)")
    if frame_c is None or dark_c is None:
        which = "the frame and the master dark have" if frame_c is None and dark_c is None else (
            "the frame has" if frame_c is None else "the master dark has")
        return TemperatureScaling(1.0, law, frame_c, dark_c, f"{which} no temperature")
    return TemperatureScaling(law.factor(frame_c, dark_c), law, frame_c, dark_c)
