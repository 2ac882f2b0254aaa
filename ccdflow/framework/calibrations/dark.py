"""Master dark: thermal signal per exposure, at one exposure time and detector temperature."""

from __future__ import annotations

from collections.abc import Sequence
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

#: Darks whose temperatures are within this many degrees C of the next go into one master: the
#: cooler's set points. The instrument's dark rule replaces it by its temperature_tolerance (an
#: uncooled camera widens it).
TEMPERATURE_STEP = 2.0


class Dark(CalibrationType):
    name: ClassVar[str] = "dark"
    description: ClassVar[str] = "thermal signal at one exposure time and temperature"
    frame_type: ClassVar[str | None] = "dark"
    order: ClassVar[int] = 20
    default_recipe: ClassVar[tuple[str, ...]] = ("overscan", "trim", "bias")
    trend_stat: ClassVar[str] = "dark_rate"
    temperature_tolerance: ClassVar[float | None] = 2.0
    scales_with_exposure: ClassVar[bool] = True

    @classmethod
    def default_rule(cls) -> MatchRule:
        """The common rule plus the temperature law a dark at another temperature is scaled by
        (arrhenius, silicon's band gap: ccdflow.framework.engine.dark_law says why); an
        instrument's YAML replaces it with its own (``caldb: dark: temperature_law:``)."""
        return super().default_rule().model_copy(update={"temperature_law": DEFAULT_LAW})

    @classmethod
    def group_key(cls, meta: FrameMeta, rule: MatchRule | None = None) -> tuple:
        """The exposure time; temperatures are clustered by :meth:`split_group`."""
        return (round(meta.exposure_time, 1),)

    @classmethod
    def split_group(cls, metas: Sequence[FrameMeta], rule: MatchRule | None = None
                    ) -> list[list[FrameMeta]]:
        """Darks clustered by temperature gaps: sorted by temperature, a new master starts where
        the next frame is more than the rule's tolerance warmer than the previous one, or would
        make the master span more than twice the tolerance (``check_group``'s limit). Fixed bins
        split a set at an arbitrary edge (-15 +- 0.1 C became masters of 4 and 1 frames when the
        bins were round(T/2)); gaps follow the cooler's set points, and an uncooled camera whose
        YAML widens the tolerance gets one master per exposure. A rule without a temperature gate
        does not split darks; frames without a temperature form their own master."""
        step = TEMPERATURE_STEP if rule is None else rule.temperature_tolerance
        known = sorted(((m.temperature, m) for m in metas if m.temperature is not None),
                       key=lambda pair: pair[0])
        unknown = [m for m in metas if m.temperature is None]
        if step is None or not known:
            return [list(metas)]
        clusters: list[list[tuple[float, FrameMeta]]] = [[known[0]]]
        for temp, meta in known[1:]:
            current = clusters[-1]
            if temp - current[-1][0] > step or temp - current[0][0] > 2 * step:
                clusters.append([(temp, meta)])
            else:
                current.append((temp, meta))
        return [[m for _, m in c] for c in clusters] + ([unknown] if unknown else [])

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
