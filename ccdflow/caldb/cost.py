"""The cost the caldb ranks surviving candidates by (lower is better), and the ranking::

    cost = |dt| / max_age  +  |dT| / T_tol  +  noise

- ``dt``: observation time difference; ``max_age``: the rule's max age (both in days).
- ``dT``: temperature difference, counted only when both are known and the rule has a
  tolerance (darks by default): what a wrong temperature law would leave behind.
- ``noise`` (types applied scaled by exposure: darks): the variance the scaled master adds to
  every product, as a fraction of the frame's own detector variance::

      noise = s**2 (rn**2 + D t_d) / (N (rn**2 + f_T D t_f)),   s = (t_f / t_d) f_T

  ``N`` frames combined at exposure ``t_d`` and dark rate ``D`` (e-/s, the caldb's
  ``dark_rate`` in ADU/s times the frame's gain), read noise ``rn`` (e-), ``f_T`` the
  temperature law's factor from the master's temperature to the frame's, ``t_f`` the frame's
  exposure. The master's per-pixel variance is ``(rn**2 + D t_d) / N``; scaled by ``s`` it
  adds ``s**2`` times that, and it is fixed-pattern noise that stacking frames does not
  remove. So a 60 s dark scaled x2 costs 25 times what a 300 s dark scaled x0.4 does
  (read-noise limited, same N). A term of 1 means the master doubles the frame's detector
  variance: as bad as a master at the age limit or at the temperature tolerance, which keeps
  the three terms comparable. Without the frame's gain and read noise (headers without them)
  the read-noise limit ``s**2 / N`` is used, and the receipt says so; a master whose number of
  inputs is unknown counts as one frame.

Exact exposure matches still rank before every scaled dark (selection.rank_key); among them,
the noise term prefers the master of more frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ccdflow.framework.calibrations import find_type
from ccdflow.framework.engine.dark_law import temperature_scaling

if TYPE_CHECKING:
    from ccdflow.caldb.selection import CalRecord, Candidate
    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.instrument import MatchRule


@dataclass
class NoiseTerm:
    """The noise a scaled master adds, and what it was computed from."""

    value: float
    exposure_scale: float
    temperature_factor: float
    n_combined: int
    model: str

    @property
    def scale(self) -> float:
        return self.exposure_scale * self.temperature_factor


def noise_term(meta: FrameMeta, rec: CalRecord, rule: MatchRule) -> NoiseTerm:
    """The ``noise`` term of the cost for a master applied scaled by exposure (see module)."""
    t_d = rec.exposure_time or 0.0
    exposure = meta.exposure_time / t_d if t_d > 0 else 1.0
    temp = temperature_scaling(rule.temperature_law, meta.temperature, rec.temperature)
    n = rec.n_combined if rec.n_combined and rec.n_combined > 0 else 1
    notes = [] if rec.n_combined else ["number of inputs unknown: counted as 1"]
    if temp.reason is not None:
        notes.append(temp.describe())
    rate_adu = (rec.stats or {}).get("dark_rate")
    s2 = (exposure * temp.factor) ** 2
    if meta.gain and meta.read_noise and rate_adu is not None:
        rate = max(float(rate_adu), 0.0) * meta.gain  # e-/s at the master's temperature
        rn2 = meta.read_noise ** 2
        value = s2 * (rn2 + rate * t_d) / (n * (rn2 + temp.factor * rate * meta.exposure_time))
        model = (f"s^2 (rn^2 + D t_d) / (N (rn^2 + f_T D t_f)), rn {meta.read_noise:g} e-, "
                 f"D {rate:.4g} e-/s")
    else:
        value = s2 / n
        missing = "the master's dark rate" if rate_adu is None else "the frame's gain or read noise"
        model = f"read-noise limit s^2 / N ({missing} not known)"
    return NoiseTerm(value, exposure, temp.factor, n, "; ".join([model, *notes]))


@dataclass
class CostTerms:
    """A candidate's cost and its parts, as receipts show them."""

    total: float
    time: float
    temperature: float | None = None
    noise: float | None = None
    exposure_scale: float | None = None
    temperature_factor: float | None = None
    n_combined: int | None = None
    noise_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()
                if v is not None}


def cost_terms(meta: FrameMeta, rec: CalRecord, rule: MatchRule, dt_days: float,
               dtemp: float | None, scaled_by_exposure: bool) -> CostTerms:
    """Every term of a surviving candidate's cost (see the module docstring)."""
    terms = CostTerms(total=0.0, time=abs(dt_days) / rule.max_age_days)
    if dtemp is not None and rule.temperature_tolerance:
        terms.temperature = abs(dtemp) / rule.temperature_tolerance
    if scaled_by_exposure and meta.exposure_time > 0:
        noise = noise_term(meta, rec, rule)
        terms.noise, terms.n_combined, terms.noise_model = noise.value, noise.n_combined, noise.model
        terms.exposure_scale, terms.temperature_factor = noise.exposure_scale, noise.temperature_factor
    terms.total = round(terms.time + (terms.temperature or 0.0) + (terms.noise or 0.0), 6)
    return terms


def rank_key(cand: Candidate, rec: CalRecord) -> tuple:
    """Exact exposures first, then cost, then later ingest, then higher id."""
    return (cand.exact_exposure is False, cand.cost, -rec.ingested_at.timestamp(), -rec.id)


def scales_with_exposure(kind: str) -> bool:
    """Whether masters of ``kind`` are applied scaled by exposure time (darks), so the exposure
    policy and the noise term apply; False for a type no installed plugin knows."""
    found = find_type(kind)
    return found is not None and found.scales_with_exposure
