"""Instrument configuration models: how to read a camera's headers and reduce its frames.

An instrument is pure data (a pydantic model, usually loaded from YAML) so that an
observatory can describe a new camera without writing Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ccdflow.framework.engine.caltype import ALWAYS_MATCHED, SETUP_FIELDS
from ccdflow.framework.engine.frame_type_rules import FRAME_TYPE_ORDER, FrameTypeRule, FrameTypeSource
from ccdflow.framework.engine.gain_config import Assumed, GainTable, ReadNoiseTable, check_assumptions
from ccdflow.framework.engine.readout_geometry import Geometry

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

Scalar = str | int | float | bool

#: What an instrument says of one calibration type (its ``calibrations:`` key): ``required``
#: (a frame without a matching master fails), ``optional`` (used when one matches, else the step
#: that needs it is SKIPPED with the reason) or ``none`` (the camera takes none: never looked for,
#: the step SKIPPED). See ccdflow.framework.engine.calibration_policy.
CalibrationPolicy = Literal["required", "optional", "none"]
#: Units a raw header value may be in: times (to seconds), temperatures (to Celsius), and for an
#: observation time given as a number, Modified or plain Julian Date.
Unit = Literal["us", "ms", "s", "min", "h", "C", "K", "F", "mjd", "jd"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeywordSpec(_Strict):
    """Where one metadata value lives in the header and how to normalise it."""

    keyword: list[str] = Field(
        default_factory=list,
        description="Header keywords to try in order; the first one present wins.",
    )
    compound: list[str] = Field(
        default_factory=list,
        description="Keywords whose values are joined with '|' into one value "
        "(e.g. ESO DPR CATG|TYPE|TECH); missing ones contribute ''.",
    )
    hdu: int | str | None = Field(
        None, description="HDU to read; None means the data HDU, then the primary HDU."
    )
    default: Scalar | None = Field(None, description="Value used when no keyword is present.")
    required: bool = Field(False, description="Missing value (and no default) is an error.")
    unit: Unit | None = Field(
        None, description="Unit of the raw value; converted to seconds or Celsius (us, ms, s, "
        "min, h; C, K, F), or for date_obs a number read as 'mjd' or 'jd'.",
    )
    units: dict[str, Unit] = Field(
        default_factory=dict,
        description="Unit of one keyword when it differs from `unit` (ZWO's EXPOINUS: us after "
        "EXPTIME in s; MJD-OBS: mjd after DATE-OBS), so a fallback keyword keeps its own unit.",
    )
    kelvin_above: float | None = Field(
        None,
        description="Temperatures only: raw values above this are read as kelvin whatever "
        "`unit` says (some IRAF-era cameras write K under a Celsius keyword such as CCD-TEMP; "
        "no detector runs above ~60 C, and cooled ones report 150-200 K).",
    )
    values: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Case-insensitive glob pattern -> normalised value; first match wins.",
    )
    strict_values: bool = Field(
        False, description="When values are given and none matches, the value is an error."
    )

    @field_validator("keyword", "compound", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class HeaderMap(_Strict):
    """Keyword map from a camera's headers to :class:`~ccdflow.framework.engine.frame.FrameMeta`."""

    frame_type: KeywordSpec = Field(description="Frame type; values map raw strings to types.")
    exposure_time: KeywordSpec = Field(description="Exposure time.")
    date_obs: KeywordSpec = Field(description="Observation start (ISO date or date+time).")
    time_obs: KeywordSpec | None = Field(
        None, description="Time of day, for headers whose date_obs holds only the date "
        "('hh:mm:ss[.sss]', or a number: decimal hours unless `unit` says otherwise)."
    )
    frame_type_rules: list[FrameTypeRule] = Field(
        default_factory=list,
        description="Frame type from conditions on several keywords (EXPTIME == 0 and SHUTTER "
        "closed -> bias); the first rule whose conditions all hold decides.",
    )
    frame_type_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Opt-in: case-insensitive glob on the file's path -> frame type, for cameras "
        "that write the type only in file or folder names. A pattern of k parts ('Bias/*') is "
        "matched against the last k parts of the path; the first match wins.",
    )
    frame_type_from: list[FrameTypeSource] = Field(
        default_factory=lambda: list(FRAME_TYPE_ORDER),
        description="Where the frame type is looked for, in order: the frame_type keyword "
        "('header', which wins when present unless listed later), frame_type_rules ('rules'), "
        "frame_type_paths ('path').",
    )
    filter: KeywordSpec = Field(default_factory=KeywordSpec, description="Filter name.")
    temperature: KeywordSpec = Field(default_factory=KeywordSpec, description="CCD temperature.")
    detector: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default="default"), description="Detector id."
    )
    binning: KeywordSpec | None = Field(
        None, description="Combined binning such as CCDSUM '2 2' or '2x2' (wins over x/y)."
    )
    binning_x: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default=1), description="Binning along x."
    )
    binning_y: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default=1), description="Binning along y."
    )
    readout_mode: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default="default"), description="Readout mode."
    )
    gain: KeywordSpec = Field(default_factory=KeywordSpec, description="Gain (e-/ADU).")
    read_noise: KeywordSpec = Field(default_factory=KeywordSpec, description="Read noise (e-).")
    camera: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(keyword=["INSTRUME"]),
        description="Camera model or name; with camera_serial, the identity calibrations never "
        "cross.",
    )
    camera_serial: KeywordSpec = Field(
        default_factory=KeywordSpec, description="Camera serial number, when the header has one."
    )
    gain_setting: KeywordSpec = Field(
        default_factory=KeywordSpec,
        description="A CMOS camera's unitless gain setting (ZWO/NINA/SharpCap GAIN), never e-/ADU.",
    )
    offset: KeywordSpec = Field(
        default_factory=KeywordSpec, description="The camera's offset (pedestal) setting."
    )


class MatchRule(_Strict):
    """How the caldb matches one calibration type to a frame."""

    max_age_days: float = Field(description="Largest |observation time difference| in days.")
    must_match: list[str] = Field(
        default_factory=lambda: list(SETUP_FIELDS),
        description="FrameMeta fields that must be equal; instrument and camera always are "
        "(added when a list leaves them out: calibrations never cross cameras).",
    )
    temperature_tolerance: float | None = Field(
        None, description="Largest |temperature difference| in C when both are known."
    )
    exposure_rel_tolerance: float = Field(0.01, description="Relative exposure match tolerance.")
    exposure_abs_tolerance: float = Field(0.1, description="Absolute exposure tolerance in s.")
    allow_exposure_scaling: bool = Field(True, description="Allow scaling darks by exposure.")

    @field_validator("must_match")
    @classmethod
    def _always_matched(cls, value: list[str]) -> list[str]:
        """A site's list written before cameras were told apart (``[instrument, detector, ...]``)
        still never takes another camera's master: the gate is a safety, not a preference."""
        return [*(f for f in ALWAYS_MATCHED if f not in value), *value]


def _default_match_rules() -> dict[str, MatchRule]:
    """Each built-in calibration type's own default rule (a plugin's type has its own too,
    found through the plugin manager when an instrument does not list it)."""
    from ccdflow.framework.calibrations import BUILTIN_TYPES

    return {t.name: t.default_rule() for t in BUILTIN_TYPES}


class RecipeEntry(_Strict):
    """One step of a recipe, with recipe-specific parameters."""

    step: str = Field(description="Registered step name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters for this step.")


def _default_recipes() -> dict[str, list[RecipeEntry]]:
    """Masters' inputs are preprocessed as their calibration type says; science frames get
    saturation first (it needs raw ADU), linearity after overscan and before gain, the
    uncertainty plane before bias so later steps propagate it, cosmic rays last (in e-)."""
    from ccdflow.framework.calibrations import BUILTIN_TYPES

    names = {t.frame_type: list(t.default_recipe) for t in BUILTIN_TYPES if t.frame_type}
    names["science"] = ["saturation", "overscan", "trim", "linearity", "uncertainty", "bias", "dark",
                        "flat", "bpm", "gain", "cosmicray"]
    return {kind: [RecipeEntry(step=s) for s in steps] for kind, steps in names.items()}


class Instrument(_Strict):
    """Everything ccdflow needs to know about one camera."""

    name: str = Field(description="Unique instrument name used on the command line.")
    description: str = Field("", description="One line for `ccdflow plugins`.")
    identify: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Header keyword -> glob patterns; all keywords must match. More keywords "
        "make the rule more specific, and the most specific match wins. Empty: never "
        "identified automatically (only by name).",
    )
    data_hdu: int | str = Field(
        0,
        description="HDU holding the pixels: index, EXTNAME, or 'auto' for the first HDU "
        "with a 2-D image (primary-only and MEF files alike).",
    )
    header: HeaderMap = Field(description="Keyword map to FrameMeta.")
    zero_exposure_dark_is_bias: bool = Field(
        False, description="Classify darks with zero exposure as bias (ESO convention)."
    )
    # never a silent default: see ccdflow.plugins.steps.noise for the order they are looked in
    gain: float | None = Field(
        None, gt=0, description="Gain in e-/ADU for frames whose header has none (a measured or "
        "data-sheet value); None: the header, gain_table or assume must give it, else the steps "
        "that need it (uncertainty, gain, cosmicray) refuse the frame.")
    read_noise: float | None = Field(
        None, ge=0, description="Read noise in e- for frames whose header has none; None: as for gain.")
    gain_table: GainTable = Field(
        default_factory=dict, description="CMOS: gain setting (FrameMeta.gain_setting, as text) -> "
        "e-/ADU, for headers that give the setting (GAIN = 120) and not the gain; a setting not "
        "listed is an error.")
    read_noise_table: ReadNoiseTable = Field(
        default_factory=dict, description="CMOS: gain setting -> read noise in e-.")
    assume: Assumed = Field(
        default_factory=Assumed, description="Values to assume when neither header nor config gives "
        "one, e.g. {read_noise: 5.0}: used, and flagged as assumed in products and the report.")
    saturation: float = Field(65535.0, description="Saturation level in raw ADU.")
    linearity: list[float] = Field(
        default_factory=list,
        description="Polynomial coefficients c0, c1, ... mapping raw ADU to linear ADU; "
        "empty means linear.",
    )
    geometry: Geometry = Field(default_factory=Geometry, description="Detector geometry.")
    recipes: dict[str, list[RecipeEntry]] = Field(
        default_factory=_default_recipes, description="Ordered steps per frame type."
    )
    steps: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Instrument-level parameters per step name."
    )
    calibrations: dict[str, CalibrationPolicy] = Field(
        default_factory=dict,
        description="Calibration type -> 'required', 'optional' or 'none' (this camera takes "
        "none, e.g. darks of an LN2-cooled CCD). A type not listed is as its steps declare: "
        "required, except the BPM (optional).",
    )
    caldb: dict[str, MatchRule] = Field(
        default_factory=_default_match_rules, description="Calibration match rules per type."
    )

    @model_validator(mode="after")
    def _assumptions_apply(self) -> Instrument:
        check_assumptions(self)
        return self

    @field_validator("identify", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("caldb", mode="before")
    @classmethod
    def _merge_match_defaults(cls, value: Any) -> Any:
        """Partial rules (e.g. only dark's tolerance) keep the defaults for the rest."""
        if not isinstance(value, dict):
            return value
        merged = {k: r.model_dump() for k, r in _default_match_rules().items()}
        for kind, rule in value.items():
            base = merged.get(kind, {})
            merged[kind] = {**base, **rule} if isinstance(rule, dict) else rule
        return merged

    @field_validator("recipes", mode="before")
    @classmethod
    def _recipe_shorthand(cls, value: Any) -> Any:
        """Accept 'step' or {'step': {params}} entries as well as full RecipeEntry dicts."""
        if not isinstance(value, dict):
            return value
        out: dict[str, list[Any]] = {}
        for kind, entries in value.items():
            out[kind] = [_entry(e) for e in entries] if isinstance(entries, list) else entries
        return out

    def recipe_for(self, frame_type: str) -> list[RecipeEntry] | None:
        """This instrument's recipe for ``frame_type``, else the default recipe of the registered
        calibration type made from such frames, else None.

        An instrument is validated when its plugin loads, possibly before another plugin
        registers a type (a fringe frame from night-sky frames), so a type's recipe is looked up
        here, when it is needed, rather than filled in as the built-in types' are."""
        if frame_type in self.recipes:
            return self.recipes[frame_type]
        from ccdflow.framework.calibrations import for_frame_type

        caltype = for_frame_type(frame_type)
        return None if caltype is None else [RecipeEntry(step=s) for s in caltype.default_recipe]

    def match_rule(self, kind: str, manager: PluginManager | None = None) -> MatchRule:
        """This instrument's caldb rule for ``kind``, else the registered type's default rule
        (``manager``'s types, or the process's): for the same reason as :meth:`recipe_for`,
        a plugin's type is not in ``caldb`` unless the instrument's YAML lists it. An unknown
        type is a ConfigError."""
        if kind in self.caldb:
            return self.caldb[kind]
        from ccdflow.framework.calibrations import calibration_type

        return calibration_type(kind, manager).default_rule()


def _entry(entry: Any) -> Any:
    if isinstance(entry, str):
        return {"step": entry}
    if isinstance(entry, dict) and len(entry) == 1 and "step" not in entry:
        (name, params), = entry.items()
        return {"step": name, "params": params or {}}
    return entry
