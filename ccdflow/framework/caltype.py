"""The calibration-type contract: everything ccdflow knows about one kind of calibration.

bias, dark, flat and bpm are built-in types registered through the same hook a plugin uses
to add a fringe frame, a shutter map or an illumination correction. The pipeline, the master
builder, the caldb and the reduction ask the type instead of branching on its name.
"""

from __future__ import annotations

import re
from typing import ClassVar

from ccdflow.framework.errors import PluginError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class CalibrationType:
    """One calibration type. Subclass it, set the class attributes, override what differs.

    A type is a class, not an instance: it holds knowledge, not state, and is registered with
    ``register_calibration_types``.
    """

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

    @classmethod
    def tag(cls) -> str:
        """The provenance card tag (the name's first four letters, upper case, by default)."""
        return (cls.card_tag or cls.name[:4]).upper()


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
