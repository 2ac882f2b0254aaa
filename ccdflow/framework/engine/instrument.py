"""Instrument configuration models: how to read a camera's headers and reduce its frames.

An instrument is pure data (a pydantic model, usually loaded from YAML) so that an
observatory can describe a new camera without writing Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ccdflow.framework.engine.caltype import ALWAYS_MATCHED, SETUP_FIELDS
from ccdflow.framework.engine.dark_law import TemperatureLaw
from ccdflow.framework.engine.frame_qa_limits import FrameQaLimits
from ccdflow.framework.engine.gain_config import Assumed, GainTable, ReadNoiseTable, check_assumptions
from ccdflow.framework.engine.header_spec import HeaderMap, Strict
from ccdflow.framework.engine.master_options import MasterOptions, MasterSettings
from ccdflow.framework.engine.master_qa import MasterQa
from ccdflow.framework.engine.readout_geometry import Geometry

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager


#: What an instrument says of one calibration type (its ``calibrations:`` key): ``required``
#: (a frame without a matching master fails), ``optional`` (used when one matches, else the step
#: that needs it is SKIPPED with the reason) or ``none`` (the camera takes none: never looked for,
#: the step SKIPPED). See ccdflow.framework.engine.calibration_policy.
CalibrationPolicy = Literal["required", "optional", "none"]



class MatchRule(Strict):
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
    temperature_law: TemperatureLaw | None = Field(
        None, description="How the dark current follows temperature (darks): a master dark at "
        "another temperature is scaled by it, and the caldb counts the noise it adds. The dark "
        "type's default: arrhenius with silicon's band gap (docs/steps/dark.md).")
    qa: MasterQa = Field(default_factory=MasterQa,
                         description="Overrides of the type's master QA limits (see docs/caldb.md).")

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


class RecipeEntry(Strict):
    """One step of a recipe, with recipe-specific parameters."""

    step: str = Field(description="Registered step name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters for this step.")


def _default_recipes() -> dict[str, list[RecipeEntry]]:
    """Masters' inputs are preprocessed as their calibration type says; science frames get
    saturation first (it needs raw ADU), linearity after overscan and before gain, the
    uncertainty plane right after bias (its Poisson term must see the signal without the
    electronic pedestal, which a camera without overscan still carries until the master bias is
    subtracted; the bias's error is carried into it), cosmic rays last (in e-)."""
    from ccdflow.framework.calibrations import BUILTIN_TYPES

    names = {t.frame_type: list(t.default_recipe) for t in BUILTIN_TYPES if t.frame_type}
    names["science"] = ["saturation", "overscan", "trim", "linearity", "bias", "uncertainty", "dark",
                        "flat", "bpm", "gain", "cosmicray"]
    return {kind: [RecipeEntry(step=s) for s in steps] for kind, steps in names.items()}


class Instrument(Strict):
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
    masters: dict[str, MasterOptions] = Field(
        default_factory=dict, description="Calibration type -> how the night builds its masters "
        "(method, clip, fallback, warn_below, min_frames); a type or value not listed keeps the "
        "type's default (sigma-clipped mean, minmax fallback, warning below 5 frames).")
    frame_qa: FrameQaLimits = Field(
        default_factory=FrameQaLimits, description="Thresholds that flag a reduced science frame "
        "in the night report (FWHM, ellipticity, noise ratio, stars, saturated and masked "
        "fractions) and the pixel scale; a value not given keeps the default (docs/frame-qa.md).")

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

    def master_settings(self, kind: str, manager: PluginManager | None = None) -> MasterSettings:
        """How the night builds masters of ``kind`` on this instrument: the type's defaults
        overridden by this instrument's ``masters:`` entry (a night file's merged into it)."""
        from ccdflow.framework.calibrations import calibration_type

        return calibration_type(kind, manager).settings(self.masters.get(kind))

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
