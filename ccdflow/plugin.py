"""What a plugin imports: the hook marker, the Step and CalibrationType contracts, the Instrument
and FrameMeta models, the error taxonomy, the header-card schema and frame arithmetic with
uncertainty propagation (``subtract_scaled``).

These names are ccdflow's promise to plugin authors; the modules behind them
(``ccdflow.framework...``) may move between releases, this module's names stay.
"""

from __future__ import annotations

from ccdflow.framework.engine.caltype import SETUP_FIELDS, CalibrationType
from ccdflow.framework.engine.errors import (
    AlgorithmError,
    CcdflowError,
    ConfigError,
    IlluminatedOverscanError,
    NoWorkError,
    PluginError,
    SectionError,
    UnprocessableInputError,
)
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.instrument import Instrument, MatchRule
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.io import cards
from ccdflow.framework.numerics.arithmetic import subtract_scaled

__all__ = [
    "SETUP_FIELDS", "AlgorithmError", "CalibrationType", "CcdflowError", "ConfigError", "FrameMeta",
    "IlluminatedOverscanError", "Instrument", "MatchRule", "NoWorkError", "PluginError",
    "PluginManager", "SectionError", "Step", "StepContext", "StepParams", "UnprocessableInputError",
    "cards", "header_of", "hookimpl", "subtract_scaled",
]
