"""Declarative frame-type rules: a frame type from conditions on several header keywords.

Some cameras write no IMAGETYP but say enough elsewhere (``EXPTIME = 0`` with
``SHUTTER = 'CLOSED'`` is a bias). A rule is data in the instrument's YAML, never code: each
condition tests one keyword (or the normalised exposure time) with a fixed set of comparisons,
so a YAML file cannot run anything::

    frame_type_rules:
      - type: bias
        when:
          - {field: exposure_time, equals: 0}
          - {keyword: SHUTTER, matches: ["closed*", "0"]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Where a frame type may come from, in the order an instrument lists them.
FrameTypeSource = Literal["header", "rules", "path"]
#: The default order: the type keyword wins when present, then rules, then the path.
FRAME_TYPE_ORDER: tuple[FrameTypeSource, ...] = ("header", "rules", "path")

#: Normalised values a condition may test instead of a raw keyword (read before the type).
RULE_FIELDS = ("exposure_time",)


class Condition(BaseModel):
    """One test on one keyword's value (or a normalised field's); every test given must hold."""

    model_config = ConfigDict(extra="forbid")

    keyword: str | None = Field(None, description="Header keyword (data HDU, then primary).")
    field: Literal["exposure_time"] | None = Field(
        None, description="A normalised value instead of a keyword (seconds, after units)."
    )
    present: bool | None = Field(None, description="The keyword is present (true) or absent (false).")
    equals: str | int | float | bool | None = Field(
        None, description="Equal: numbers as numbers, text case-insensitively."
    )
    matches: list[str] = Field(
        default_factory=list, description="Case-insensitive glob patterns; any one may match."
    )
    below: float | None = Field(None, description="A number < this.")
    above: float | None = Field(None, description="A number > this.")

    @field_validator("matches", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _well_formed(self) -> Condition:
        if (self.keyword is None) == (self.field is None):
            raise ValueError("a condition names exactly one of `keyword` or `field`")
        tests = (self.present, self.equals, self.below, self.above)
        if all(t is None for t in tests) and not self.matches:
            raise ValueError("a condition needs a test: present, equals, matches, below or above")
        if self.field is not None and self.present is not None:
            raise ValueError("`present` tests a keyword, not a normalised field")
        return self

    @property
    def subject(self) -> str:
        """What is tested, as messages name it."""
        return self.keyword or str(self.field)

    def describe(self) -> str:
        """'EXPTIME == 0 and < 1': the condition as a note or inspect shows it."""
        parts = []
        if self.present is not None:
            parts.append("present" if self.present else "absent")
        if self.equals is not None:
            parts.append(f"== {self.equals!r}")
        if self.matches:
            parts.append("matches " + " or ".join(repr(m) for m in self.matches))
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        return f"{self.subject} " + " and ".join(parts)


class FrameTypeRule(BaseModel):
    """The frame type ``type`` when every condition in ``when`` holds."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="Frame type given (bias, dark, flat, science...).")
    when: list[Condition] = Field(min_length=1, description="Conditions, all of which must hold.")

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.when) + f" -> {self.type}"
