"""Where a step finds the detector's gain and read noise, and which unit the pixels are in:
the one resolver shared by the uncertainty, gain and cosmic-ray steps.

Nothing is silently defaulted (a gain of 1 e-/ADU and a read noise of 0 e- used to be, and
made the uncertainty plane and the cosmic-ray noise model wrong with no warning). In order:

1. the frame's header, through the instrument's header map (``FrameMeta.gain``/``read_noise``);
2. the instrument's ``gain_table``/``read_noise_table`` for the frame's CMOS gain *setting*
   (``FrameMeta.gain_setting``): a setting the table lacks is an error listing the table;
3. the instrument's ``gain``/``read_noise`` (a value the observatory knows);
4. the instrument's ``assume: {gain: ..., read_noise: ...}``: a value nobody measured, used
   only because the instrument says so, recorded in the product (``CF_AGAIN``/``CF_ARDN``)
   and flagged in the night report;
5. otherwise an UnprocessableInputError naming the keyword looked for and the YAML lines
   that would give the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.headers.header_reader import FieldSource
from ccdflow.framework.io import cards

Quantity = Literal["gain", "read_noise"]
_WORDS = {"gain": ("gain", "e-/ADU"), "read_noise": ("read noise", "e-")}


@dataclass(frozen=True)
class Resolved:
    """A gain or read noise and where it came from (``header GAIN``, ``gain_table['120']``,
    ``instrument gain``, ``assumed``)."""

    value: float
    source: str

    @property
    def assumed(self) -> bool:
        return self.source == "assumed"


def in_electrons(ccd: CCDData) -> bool:
    """True when the gain step already ran (unit electron, or its DONE card)."""
    return str(ccd.unit) in ("electron", "e-") or ccd.header.get("CF_GAIN") == "DONE"


def _table_value(table: dict[str, float], setting: str) -> float | None:
    """The table's value for ``setting``: by its text, else by number ('120' finds '120.0')."""
    if setting in table:
        return table[setting]
    try:
        number = float(setting)
    except ValueError:
        return None
    for key, value in table.items():
        try:
            if float(key) == number:
                return value
        except ValueError:
            continue
    return None


def resolve(context: StepContext, quantity: Quantity, what: str) -> Resolved:
    """The frame's gain (e-/ADU) or read noise (e-), in the order of the module docstring."""
    inst, meta = context.instrument, context.meta
    name, unit = _WORDS[quantity]
    from_header = meta.gain if quantity == "gain" else meta.read_noise
    spec = inst.header.gain if quantity == "gain" else inst.header.read_noise
    # a map that reads no keyword (GAIN is a CMOS gain *setting* there) must not be named GAIN
    keywords = " or ".join(spec.keyword) if spec.keyword else f"(none: the header map reads no {name})"
    if from_header is not None:
        return Resolved(float(from_header), f"header {keywords}")
    table = inst.gain_table if quantity == "gain" else inst.read_noise_table
    setting = meta.gain_setting
    if table and setting is not None:
        value = _table_value(table, setting)
        if value is None:
            listed = ", ".join(f"{k!r}: {v:g}" for k, v in table.items())
            setting_keyword = " or ".join(inst.header.gain_setting.keyword) or "gain setting"
            raise UnprocessableInputError(
                f"{what} needs the {name} at gain setting {setting!r}, which the {quantity}_table "
                f"of instrument {inst.name} does not list ({{{listed}}})",
                path=meta.path, keyword=setting_keyword, value=setting,
                expected=f"a setting of the table, or the setting's {name} ({unit}) added to "
                f"`{quantity}_table:`")
        return Resolved(float(value), f"{quantity}_table[{setting!r}]")
    configured = getattr(inst, quantity)
    if configured is not None:
        return Resolved(float(configured), f"instrument {quantity}")
    assumed = getattr(inst.assume, quantity)
    if assumed is not None:
        return Resolved(float(assumed), "assumed")
    table_hint = (f" (its {quantity}_table needs the frame's gain setting, which the header "
                  "does not give)" if table else "")
    raise UnprocessableInputError(
        f"{what} needs the {name} and neither the header nor instrument {inst.name!r} gives "
        f"one{table_hint}", path=meta.path, keyword=keywords,
        expected=f"a {name} in {unit} in the header; or in the instrument YAML `{quantity}: "
        f"<value>` (measured), `{quantity}_table:` per gain setting, or `assume: {{{quantity}: "
        "<value>}` (flagged as assumed in products and the report)",
    )


def record(resolved: Resolved, quantity: Quantity, header: fits.Header | None) -> float:
    """The value, with a card in ``header`` when it was only assumed."""
    if resolved.assumed and header is not None:
        (cards.AGAIN if quantity == "gain" else cards.ARDN).put(header, resolved.value)
    return resolved.value


def detector_gain(context: StepContext, what: str, header: fits.Header | None = None) -> float:
    """The gain (e-/ADU); an assumed one is recorded in ``header`` (the step's output header)."""
    return record(resolve(context, "gain", what), "gain", header)


def detector_read_noise(context: StepContext, what: str, header: fits.Header | None = None) -> float:
    """The read noise (e-); an assumed one is recorded in ``header`` (the step's output header)."""
    return record(resolve(context, "read_noise", what), "read_noise", header)


def detector_sources(meta: FrameMeta, inst: Instrument, warnings: list[str]) -> list[FieldSource]:
    """For ``ccdflow inspect``: the gain and read noise the steps will use for this frame and where
    from (the header, a table per gain setting, the instrument's value, an assumed value), found
    by :func:`resolve` as the steps find them; a value nobody gives, when the frame's recipe
    needs one, is a warning saying what the YAML could say."""
    recipe = [entry.step for entry in inst.recipe_for(meta.frame_type) or []]
    needing = [step for step in ("uncertainty", "gain", "cosmicray") if step in recipe]
    rows = []
    for quantity, unit in (("gain", "e-/ADU"), ("read_noise", "e-")):
        try:
            found = resolve(StepContext(meta, inst), quantity, "the uncertainty step")  # type: ignore[arg-type]
        except UnprocessableInputError as exc:
            why = f"none: the {meta.frame_type} recipe does not need one" if not needing else "none"
            rows.append(FieldSource(f"{quantity} used", None, None, None, (why,)))
            if needing:
                why = str(exc).removeprefix(f"{meta.path}: ")
                warnings.append(f"no {quantity.replace('_', ' ')} for this frame: its {', '.join(needing)} "
                                f"step(s) will refuse it: {why}")
            continue
        note = f"from {found.source}" + (" (flagged in every product)" if found.assumed else "")
        rows.append(FieldSource(f"{quantity} used", None, None, f"{found.value:g} {unit}", (note,)))
    return rows
