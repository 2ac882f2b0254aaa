"""Units of raw header values, converted to ccdflow's: seconds and degrees Celsius.

One table, so a YAML's ``unit:`` and the converter cannot disagree (ZWO's ``EXPOINUS`` is in
microseconds, old TCSs write exposure in ms or minutes, IRAF-era cameras kelvin).
"""

from __future__ import annotations

from collections.abc import Callable

#: Seconds per unit of time, as (multiplier, divisor): 64 us is 64 / 1e6 = 6.4e-05 exactly as a
#: float literal would be, where 64 * 1e-6 is not.
SECONDS: dict[str, tuple[float, float]] = {
    "us": (1.0, 1e6), "ms": (1.0, 1e3), "s": (1.0, 1.0), "min": (60.0, 1.0), "h": (3600.0, 1.0),
}

#: Temperature units to Celsius.
CELSIUS: dict[str, Callable[[float], float]] = {
    "C": lambda t: t,
    "K": lambda t: t - 273.15,
    "F": lambda t: (t - 32.0) * 5.0 / 9.0,
}

#: Units that only say how to read a date given as a number (see obs_time).
DATE_UNITS = ("mjd", "jd")


def convert(value: float, unit: str | None) -> float:
    """``value`` in seconds or Celsius; None, a unit already ccdflow's, or a date unit (the
    date reader applies it) leaves it as it is."""
    if unit in SECONDS:
        times, per = SECONDS[unit]
        return value * times / per
    if unit in CELSIUS:
        return CELSIUS[unit](value)
    return value


def to_unit(value: float, unit: str | None) -> float:
    """The inverse of :func:`convert`: seconds or Celsius back in ``unit`` (a master writes its
    inputs' mean exposure and temperature into the camera's own keywords)."""
    if unit in SECONDS:
        times, per = SECONDS[unit]
        return value * per / times
    if unit == "K":
        return value + 273.15
    if unit == "F":
        return value * 9.0 / 5.0 + 32.0
    return value


def describe(raw: float, unit: str | None, value: float) -> str | None:
    """'64 us -> 6.4e-05 s' for provenance, or None when nothing was converted."""
    if unit is None or unit in DATE_UNITS or unit in ("s", "C"):
        return None
    target = "s" if unit in SECONDS else "C"
    return f"{raw:g} {unit} -> {value:g} {target}"
