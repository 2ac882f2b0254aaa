"""How an instrument states the gain and read noise its headers do not give.

Part of the instrument model (``Instrument.gain``, ``read_noise``, ``gain_table``,
``read_noise_table``, ``assume``); ``ccdflow.plugins.steps.noise`` is the one place that
resolves them for a frame, in the order its docstring gives. Kept apart from instrument.py so
the instrument model stays readable.

In YAML::

    gain_table: {"0": 0.25, "100": 0.1}      # CMOS gain setting (header GAIN) -> e-/ADU
    read_noise_table: {"0": 6.5, "100": 2.3}  # gain setting -> e-
    assume: {read_noise: 5.0}                 # nobody measured it: flagged in every product
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeFloat, PositiveFloat

if TYPE_CHECKING:
    from ccdflow.framework.engine.instrument import Instrument


def _text_keys(value: Any) -> Any:
    """YAML reads ``{0: 0.25}`` with an integer key; a gain setting is text (``FrameMeta.gain_setting``)."""
    if isinstance(value, dict):
        return {str(k).strip(): v for k, v in value.items()}
    return value


#: Gain setting (text, as the camera writes it) -> gain in e-/ADU.
GainTable = Annotated[dict[str, PositiveFloat], BeforeValidator(_text_keys)]
#: Gain setting -> read noise in e- (a CMOS camera's read noise falls as its gain rises).
ReadNoiseTable = Annotated[dict[str, NonNegativeFloat], BeforeValidator(_text_keys)]


class Assumed(BaseModel):
    """Values used when neither the header nor the instrument's own numbers give one. They are
    a guess (a data sheet's typical value, a colleague's camera), so every product made with
    one carries a card saying so (``CF_AGAIN``, ``CF_ARDN``) and the night report flags it."""

    model_config = ConfigDict(extra="forbid")

    gain: PositiveFloat | None = Field(None, description="Gain to assume (e-/ADU).")
    read_noise: NonNegativeFloat | None = Field(None, description="Read noise to assume (e-).")


def check_assumptions(instrument: Instrument) -> None:
    """Refuse an ``assume`` value that can never apply: the instrument's own ``gain`` or
    ``read_noise`` is always found first, so the file would say something it does not do."""
    for quantity in ("gain", "read_noise"):
        if getattr(instrument.assume, quantity) is not None and getattr(instrument, quantity) is not None:
            raise ValueError(f"both `{quantity}` and `assume: {{{quantity}: ...}}` are set; `{quantity}` "
                             "always wins, so keep one: `" + quantity + "` for a measured value, "
                             "`assume` for a guess to be flagged")
