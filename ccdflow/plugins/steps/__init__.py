"""Built-in reduction steps, one module each, registered as a plugin."""

from __future__ import annotations

from collections.abc import Callable

from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.step import Step


def builtin_steps() -> list[type[Step]]:
    from ccdflow.plugins.steps.bias import BiasSubtractor
    from ccdflow.plugins.steps.bpm import BadPixelMasker
    from ccdflow.plugins.steps.cosmicray import CosmicRayDetector
    from ccdflow.plugins.steps.dark import DarkSubtractor
    from ccdflow.plugins.steps.flat import FlatDivider
    from ccdflow.plugins.steps.gain import GainCorrector
    from ccdflow.plugins.steps.linearity import LinearityCorrector
    from ccdflow.plugins.steps.overscan import OverscanSubtractor
    from ccdflow.plugins.steps.saturation import SaturationMasker
    from ccdflow.plugins.steps.source_mask import SourceMasker
    from ccdflow.plugins.steps.trim import Trimmer
    from ccdflow.plugins.steps.uncertainty import UncertaintyEstimator

    return [SaturationMasker, OverscanSubtractor, Trimmer, LinearityCorrector, UncertaintyEstimator,
            BiasSubtractor, DarkSubtractor, FlatDivider, BadPixelMasker, GainCorrector,
            CosmicRayDetector, SourceMasker]


@hookimpl
def register_steps(register: Callable[[type[Step]], None]) -> None:
    for step in builtin_steps():
        register(step)
