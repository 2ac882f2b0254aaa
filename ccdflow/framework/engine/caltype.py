"""The calibration-type contract: everything ccdflow knows about one kind of calibration.

bias, dark, flat and bpm are built-in types registered through the same hook a plugin uses
to add a fringe frame, a shutter map or an illumination correction. The pipeline, the master
builder, the caldb and the reduction ask the type instead of branching on its name.

A type is a class with class attributes and classmethods, not an instance: it holds knowledge,
not state. Override only what differs from the defaults here, which describe a plain additive
calibration (a bias-like master: combined, not normalised, matched on the detector setup).

A plugin's type needs nothing from the instruments: one without a recipe for the type's
``frame_type`` preprocesses its inputs with ``default_recipe`` (``Instrument.recipe_for``), and
one whose ``caldb:`` section does not list the type matches it with ``default_rule()``
(``Instrument.match_rule``). ``prepare_input`` and ``finish_master`` shape a master that is not
a plain stack of its inputs. The example plugin's fringe frame uses all of this
(examples/ccdflow-example-plugin, docs/plugins.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.master_options import CombineOptions, MasterOptions, MasterSettings

if TYPE_CHECKING:
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData

    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.instrument import MatchRule

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

#: FrameMeta fields every calibration must share with the frame it is applied to (its setup).
#: ``camera`` keeps two cameras that share one instrument config (two generic CCDs in one
#: caldb) apart; ``gain_setting`` and ``offset`` are a CMOS camera's settings, which change
#: the bias level and the pixels' response. None matches only None (see caldb/selection.py).
SETUP_FIELDS = ("instrument", "camera", "detector", "binning", "readout_mode", "gain_setting",
                "offset", "shape")
#: Of the setup, what no match rule may leave out: calibrations never cross cameras.
ALWAYS_MATCHED = ("instrument", "camera")


class CalibrationType:
    """One calibration type. Subclass it, set the class attributes, override what differs."""

    #: Short lowercase name, as in the caldb, the recipes and ``-p`` (``bias``, ``fringe``).
    name: ClassVar[str] = ""
    #: One line for ``ccdflow plugins``.
    description: ClassVar[str] = ""
    #: The raw frame type its masters are combined from, or None for a type made from other
    #: masters (a bad-pixel mask is made from a master dark and a master flat).
    frame_type: ClassVar[str | None] = None
    #: Masters are built in this order, so each can be preprocessed with the ones before it.
    order: ClassVar[int] = 100
    #: Up to four letters naming its provenance cards in products: CF_<TAG>F, CF_<TAG>S, CF_<TAG>I.
    card_tag: ClassVar[str] = ""
    #: Steps that preprocess each raw input before combining. The instrument's recipe for
    #: ``frame_type`` replaces it when the instrument has one; an instrument without one (a
    #: camera that knows nothing of a plugin's night-sky frames) runs this recipe instead, for
    #: the inputs of a master and for the hash that names the master alike.
    default_recipe: ClassVar[tuple[str, ...]] = ()
    #: FrameMeta fields beyond the setup that every input of one master shares and that the
    #: frame must match (a flat's filter).
    also_match: ClassVar[tuple[str, ...]] = ()
    #: Inputs are scaled to a common level before combining and the master is normalised to a
    #: median of 1 (flat fields).
    normalised: ClassVar[bool] = False
    #: How the nightly pipeline combines its masters: method, rejection, and what to do when a
    #: group is too small for sigma clipping (see ``build_master``). Part of a master's identity.
    #: The default is a sigma-clipped mean (the median's noise is ~1.25x a mean's, so a median
    #: master throws away about a third of its frames), falling back to dropping each pixel's
    #: highest value below 3 frames (a 1-2 frame master would keep its cosmic rays). An
    #: instrument's or night file's ``masters:`` section overrides it (see :meth:`settings`).
    combine_options: ClassVar[CombineOptions] = {"method": "mean", "clip": "sigma", "fallback": "minmax",
                                                 "sigma_low": 3.0, "sigma_high": 3.0}
    #: Fewer inputs than this: the night warns (``masters: {<type>: {warn_below: N}}`` overrides).
    warn_below: ClassVar[int] = 5
    #: Fewest inputs a master is built from (``masters: {<type>: {min_frames: N}}`` overrides).
    min_frames: ClassVar[int] = 1
    #: Applied in proportion to exposure time (a dark): the caldb compares exposures, prefers
    #: an exact one and may choose a scaled one, as the match rule allows.
    scales_with_exposure: ClassVar[bool] = False
    #: The caldb statistic its history plots by default.
    trend_stat: ClassVar[str] = "median"
    #: Days a master stays eligible by default (the instrument's caldb rule may say otherwise).
    max_age_days: ClassVar[float] = 30.0
    #: Largest temperature difference to the frame in C by default (None: not compared).
    temperature_tolerance: ClassVar[float | None] = None
    #: Master QA limits that differ from ``master_qa.DEFAULT_LIMITS`` (the instrument's caldb
    #: rule may override each): how far a new master may differ from the previous good one.
    qa_limits: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def tag(cls) -> str:
        """The provenance card tag (the name's first four letters, upper case, by default)."""
        return (cls.card_tag or cls.name[:4]).upper()

    @classmethod
    def settings(cls, options: MasterOptions | None = None) -> MasterSettings:
        """How masters of this type are built: the type's defaults overridden by ``options``
        (an instrument's or night file's ``masters:`` entry for it)."""
        given = {} if options is None else options.model_dump(exclude_none=True)
        own = cls.combine_options
        combine: CombineOptions = {"method": given.get("method", own["method"]),
                                   "clip": given.get("clip", own["clip"]),
                                   "fallback": given.get("fallback", own["fallback"]),
                                   "sigma_low": given.get("sigma_low", own.get("sigma_low", 3.0)),
                                   "sigma_high": given.get("sigma_high", own.get("sigma_high", 3.0))}
        return MasterSettings(combine, given.get("warn_below", cls.warn_below),
                              given.get("min_frames", cls.min_frames))

    @classmethod
    def default_rule(cls) -> MatchRule:
        """How the caldb matches a master of this type to a frame, unless the instrument says."""
        from ccdflow.framework.engine.instrument import MatchRule

        return MatchRule(max_age_days=cls.max_age_days, must_match=[*SETUP_FIELDS, *cls.also_match],
                         **({} if cls.temperature_tolerance is None
                            else {"temperature_tolerance": cls.temperature_tolerance}))

    # -- grouping raw frames into masters ---------------------------------------------------
    #: Numeric FrameMeta fields one master's inputs share within a tolerance (a dark's exposure
    #: time and temperature): clustered by gaps by :meth:`split_group`, never binned. Each needs
    #: a tolerance from :meth:`group_tolerance` (exposure_time and temperature have one here).
    numeric_group: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def group_key(cls, meta: FrameMeta, rule: MatchRule | None = None) -> tuple:
        """What, beyond night and setup, frames of one master share exactly (a flat's filter);
        numeric fields (:attr:`numeric_group`) are clustered afterwards by :meth:`split_group`.

        ``rule`` is the instrument's caldb rule for this type, when the caller knows it."""
        return tuple(getattr(meta, field) for field in cls.also_match)

    @classmethod
    def group_tolerance(cls, field: str, value: float, rule: MatchRule | None
                        ) -> tuple[float, float] | None:
        """(largest gap between neighbouring values, largest span) of ``field`` within one master
        whose values reach ``value``, or None: not split by ``field``.

        A master should not mix inputs its own caldb rule would not match to one frame, so both
        come from ``rule`` (the type's default rule when None): exposure time within
        ``max(exposure_abs_tolerance, exposure_rel_tolerance x exposure)`` (gap and span, as
        ``check_inputs`` of a dark refuses), temperature within ``temperature_tolerance`` per gap
        and twice it in all (``check_group``'s limit). A plugin's type declaring another numeric
        field overrides this for it."""
        rule = cls.default_rule() if rule is None else rule
        if field == "exposure_time":
            tol = max(rule.exposure_abs_tolerance, rule.exposure_rel_tolerance * abs(value))
            return tol, tol
        if field == "temperature":
            return None if rule.temperature_tolerance is None else (rule.temperature_tolerance,
                                                                    2 * rule.temperature_tolerance)
        raise PluginError(f"calibration type {cls.name!r} groups by {field!r} but gives no "
                          "tolerance for it: override group_tolerance")

    @classmethod
    def split_group(cls, metas: Sequence[FrameMeta], rule: MatchRule | None = None
                    ) -> list[list[FrameMeta]]:
        """Frames sharing a :meth:`group_key`, split into the masters they make, one numeric
        field of :attr:`numeric_group` after another (see :func:`cluster_by_gaps`)."""
        groups = [list(metas)]
        for field in cls.numeric_group:
            def tolerance(value: float, name: str = field) -> tuple[float, float] | None:
                return cls.group_tolerance(name, value, rule)

            groups = [part for group in groups for part in cluster_by_gaps(group, field, tolerance)]
        return groups

    @classmethod
    def name_parts(cls, meta: FrameMeta) -> list[object]:
        """Readable parts of a master's name after the night and type (``120s``, ``-20C``)."""
        return [getattr(meta, field) or f"no{field}" for field in cls.also_match]

    @classmethod
    def check_inputs(cls, metas: Sequence[FrameMeta], rule: MatchRule | None) -> None:
        """Refuse inputs of one group that must not be combined (beyond shared fields)."""

    # -- building a master ----------------------------------------------------------------------
    @classmethod
    def prepare_input(cls, ccd: CCDData, meta: FrameMeta) -> CCDData:
        """One input after its recipe, made ready to be combined (once per input, for every type).

        The hook for a master that is not a plain stack of its inputs: a fringe frame removes
        each night-sky frame's sky level and scales it to unit sky, so the combine keeps the
        pattern and not the sky. Return a new frame (or ``ccd`` untouched, the default); only
        its data and mask are combined. Raise UnprocessableInputError for an input that cannot
        be used: the nightly pipeline leaves it out with the reason. Runs before a normalised
        type's scaling, which then scales what this returns.
        """
        return ccd

    @classmethod
    def finish_master(cls, data: np.ndarray, error: np.ndarray,
                      mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The combined master's pixels and errors made final (for every type), after a normalised
        type's division by its median and before the statistics cards are computed from it.

        ``mask`` marks pixels no input reached (their values are meaningless); return new arrays
        of the same shape (the default returns them unchanged). A fringe frame removes the median
        left over from its inputs' sky levels, so its master is a zero-mean pattern.
        """
        return data, error

    @classmethod
    def stats(cls, median: float, metas: Sequence[FrameMeta],
              levels: Sequence[float]) -> dict[str, tuple[Any, str]]:
        """Cards, beyond median and noise, the caldb tracks for this type (finite values only)."""
        return {}

    @classmethod
    def extra_hdus(cls, ccd: CCDData) -> list[fits.ImageHDU]:
        """Extensions written after SCI, UNCERT and MASK (a dark's RATE image)."""
        return []

    # -- the caldb -----------------------------------------------------------------------------------
    @classmethod
    def ingest_stats(cls, stats: dict[str, float], header: fits.Header, data: np.ndarray,
                     exposure: float | None) -> dict[str, float]:
        """The caldb's statistics of a master of this type (``stats`` holds median and noise)."""
        return stats

    @classmethod
    def describe(cls, meta: FrameMeta) -> list[str]:
        """Words naming what a frame needs of this type, after the setup (``filter V``)."""
        return [f"{field} {getattr(meta, field)}" for field in cls.also_match if getattr(meta, field)]

    # -- applying a master ------------------------------------------------------------------------
    @classmethod
    def prepare(cls, ccd: CCDData) -> CCDData:
        """A master as read from disk, made ready for its step (once per load)."""
        return ccd

    @classmethod
    def match_cards(cls) -> Mapping[str, tuple[str, str]]:
        """Master header card -> (FrameMeta field, words), compared with the frame before the
        master is applied, beyond the setup."""
        return {}


def cluster_by_gaps(metas: Sequence[FrameMeta], field: str,
                    tolerance: Callable[[float], tuple[float, float] | None]) -> list[list[FrameMeta]]:
    """``metas`` clustered by the numeric ``field``: sorted by value, a new cluster starts where
    the next value is more than the gap above the previous one, or would make the cluster span
    more than the span (``tolerance(value)`` gives both at that value; None: no split).

    Gaps, not bins: bins split a set at an arbitrary edge (darks at -15 +- 0.1 C became masters
    of 4 and 1 when the bins were round(T/2); exposures of 59.99 and 60.01 s at round(t, 1)'s
    edges would too), while gaps follow the set points actually used. Frames without a value
    form their own cluster, after the others."""
    known = sorted((m for m in metas if getattr(m, field) is not None), key=lambda m: getattr(m, field))
    unknown = [m for m in metas if getattr(m, field) is None]
    clusters: list[list[FrameMeta]] = []
    for meta in known:
        value = getattr(meta, field)
        if not isinstance(value, int | float):
            raise PluginError(f"{meta.path}: {field} = {value!r} is grouped by tolerance but is not a "
                              "number (a calibration type's numeric_group lists numeric fields only)")
        limits = tolerance(value)
        if limits is None:
            return [list(metas)]
        gap, span = limits
        if clusters and (value - getattr(clusters[-1][-1], field) <= gap
                         and value - getattr(clusters[-1][0], field) <= span):
            clusters[-1].append(meta)
        else:
            clusters.append([meta])
    return clusters + ([unknown] if unknown else [])


def validate_calibration_type(cls: object) -> None:
    """Refuse a registration that is not a usable CalibrationType, saying what is wrong."""
    if not isinstance(cls, type) or not issubclass(cls, CalibrationType):
        raise PluginError(f"register_calibration_types expects a CalibrationType subclass, got {cls!r}")
    if not _NAME.match(cls.name):
        raise PluginError(f"calibration type {cls.__name__} has name {cls.name!r}; expected a short "
                          "lowercase word (letters, digits, underscores)")
    if not re.fullmatch(r"[A-Z0-9]{1,4}", cls.tag()):
        raise PluginError(f"calibration type {cls.name!r} has card tag {cls.tag()!r}; expected 1-4 "
                          "letters or digits")
