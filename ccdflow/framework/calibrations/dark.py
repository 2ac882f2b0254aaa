"""Master dark: thermal signal per exposure, at one exposure time and detector temperature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import mean
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ccdflow.framework.engine.caltype import CalibrationType
from ccdflow.framework.engine.dark_law import DEFAULT_LAW
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.io import cards

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.nddata import CCDData

    from ccdflow.framework.engine.instrument import MatchRule


class Dark(CalibrationType):
    name: ClassVar[str] = "dark"
    description: ClassVar[str] = "thermal signal at one exposure time and temperature"
    frame_type: ClassVar[str | None] = "dark"
    order: ClassVar[int] = 20
    default_recipe: ClassVar[tuple[str, ...]] = ("overscan", "trim", "bias")
    trend_stat: ClassVar[str] = "dark_rate"
    temperature_tolerance: ClassVar[float | None] = 2.0
    scales_with_exposure: ClassVar[bool] = True
    #: One master per exposure time and cooler set point, each clustered by gaps within the
    #: dark rule's tolerances (CalibrationType.split_group): -15 +- 0.1 C is one master, and
    #: an uncooled camera whose YAML widens temperature_tolerance gets one per exposure.
    numeric_group: ClassVar[tuple[str, ...]] = ("exposure_time", "temperature")
    #: QA compares rates (a new dark with the nearest previous one in exposure and temperature);
    #: the rate may drift a little with the set point's real temperature, not by a quarter. Hot
    #: pixels' shot noise is modelled roughly (one slope per master), so the smoothed test of a
    #: normal next dark reaches 0.08 % (20 simulated nights): its limit is 0.3 %.
    #: Only a dark within half a degree is compared (the set point's jitter, not another one:
    #: 1 C changes the rate by about 12 %, many pixel errors on a long dark).
    qa_limits: ClassVar[Mapping[str, Any]] = {"max_level_change": 0.25,
                                              "max_smooth_outlier_fraction": 0.003,
                                              "max_temperature_difference": 0.5}

    @classmethod
    def default_rule(cls) -> MatchRule:
        """The common rule plus the temperature law a dark at another temperature is scaled by
        (arrhenius, silicon's band gap: ccdflow.framework.engine.dark_law says why); an
        instrument's YAML replaces it with its own (``caldb: dark: temperature_law:``)."""
        return super().default_rule().model_copy(update={"temperature_law": DEFAULT_LAW})

    @classmethod
    def name_parts(cls, meta: FrameMeta) -> list[object]:
        parts: list[object] = [f"{meta.exposure_time:g}s"]
        if meta.temperature is not None:
            parts.append(f"{meta.temperature:+.0f}C")
        return parts

    @classmethod
    def check_inputs(cls, metas: Sequence[FrameMeta], rule: MatchRule | None) -> None:
        """One master dark per exposure time: its inputs agree within the rule's tolerance."""
        if rule is None:
            return
        exps = [m.exposure_time for m in metas]
        tol = max(rule.exposure_abs_tolerance, rule.exposure_rel_tolerance * max(exps))
        if max(exps) - min(exps) > tol:
            shortest = min(metas, key=lambda m: m.exposure_time)
            longest = max(metas, key=lambda m: m.exposure_time)
            raise UnprocessableInputError(
                f"dark inputs have different exposure times: {shortest.exposure_time:g} s "
                f"({shortest.path}) and {longest.exposure_time:g} s ({longest.path}), more than the "
                f"{tol:g} s tolerance; build one master dark per exposure time")

    @classmethod
    def stats(cls, median: float, metas: Sequence[FrameMeta],
              levels: Sequence[float]) -> dict[str, tuple[Any, str]]:
        exptime = mean(m.exposure_time for m in metas)
        return {cards.DKRT.keyword: (round(median / exptime, 7), cards.DKRT.comment)} if exptime > 0 else {}

    @classmethod
    def extra_hdus(cls, ccd: CCDData) -> list[fits.ImageHDU]:
        """``RATE``: SCI / CF_EXPT in ADU/s, so users and the dark step have the master both at
        its exposure time and as a rate."""
        from astropy.io import fits

        exptime = float(ccd.header.get(cards.EXPT.keyword, 0.0))
        if exptime <= 0:
            return []
        rate = fits.ImageHDU(np.asarray(ccd.data, np.float32) / np.float32(exptime), name="RATE")
        rate.header["BUNIT"] = ("adu/s", "dark current rate")
        cards.EXPT.put(rate.header, exptime, "SCI = RATE * CF_EXPT")
        return [rate]

    @classmethod
    def ingest_stats(cls, stats: dict[str, float], header: fits.Header, data: np.ndarray,
                     exposure: float | None) -> dict[str, float]:
        if exposure:
            stats["dark_rate"] = float(header.get(cards.DKRT.keyword, stats["median"] / exposure))
        return stats

    @classmethod
    def describe(cls, meta: FrameMeta) -> list[str]:
        words = [f"{meta.exposure_time:g} s"]
        if meta.temperature is not None:
            words.append(f"at {meta.temperature:.1f} C")
        return words
