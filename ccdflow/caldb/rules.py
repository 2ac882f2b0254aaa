"""Which match rule applies to a calibration type of an instrument.

An instrument's ``caldb:`` section holds one :class:`MatchRule` per calibration type; bias,
dark, flat and bpm always have one (the instrument model fills in their types' defaults). A
type the instrument does not list, e.g. one a plugin introduces (``fringe``, ``shutter``), gets
that type's own default rule, or :data:`DEFAULT_RULE` (within 30 days, the same setup:
instrument, camera, detector, binning, readout mode, gain setting, offset and raw shape) when
no such type is registered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.instrument import Instrument, MatchRule

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

DEFAULT_RULE = MatchRule(max_age_days=30, must_match=list(SETUP_FIELDS))


def rule_for(manager: PluginManager | Mapping[str, Instrument], instrument: str, kind: str) -> MatchRule:
    """The instrument's rule for ``kind``, or :data:`DEFAULT_RULE` for unlisted types.

    ``manager`` is the plugin manager, or any mapping of instrument name to
    :class:`Instrument` (e.g. the registered ones with a site's instrument file on top).
    """
    known = manager if isinstance(manager, Mapping) else manager.instruments
    if instrument not in known:
        raise ConfigError(
            f"unknown instrument {instrument!r} for caldb {kind} matching; "
            f"registered: {', '.join(sorted(known)) or 'none'}"
        )
    try:  # a mapping of instruments has no types of its own: the process's registered ones
        return known[instrument].match_rule(kind, None if isinstance(manager, Mapping) else manager)
    except ConfigError:  # a type no installed plugin registers (a foreign master's)
        return DEFAULT_RULE.model_copy(deep=True)
