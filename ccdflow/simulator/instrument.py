"""The instrument YAML that describes a simulated camera to the reduction.

A default spec needs none: its headers hold GAIN, RDNOISE, SATURATE, BIASSEC and TRIMSEC,
which the `generic` instrument reads. A spec without those keywords
(`detector_keywords=False`), with several amplifiers or with a non-linearity needs the
camera's own file, as a real camera does; `instrument_yaml` writes it from the spec (never
from the reduction's code: the simulator is independent of it).
"""

from __future__ import annotations

import numpy as np
import yaml

from ccdflow.simulator.amplifiers import amp_regions
from ccdflow.simulator.readout import nonlinear
from ccdflow.simulator.spec import SimulationSpec

NAME = "ccdflow-sim"


def inverse_nonlinearity(spec: SimulationSpec, tolerance: float = 0.05) -> list[float]:
    """Coefficients c0, c1, ... of the polynomial that turns what the ADC read (level-free
    ADU) back into the true signal: least squares over 0 to the saturation level with c0 = 0
    (no signal reads no signal), the lowest degree (up to 9) that is within `tolerance` ADU
    everywhere; [] when linear."""
    if not spec.nonlinearity:
        return []
    true = np.linspace(0.0, spec.saturation - spec.bias_level, 2000)
    read = nonlinear(true, spec.nonlinearity).astype(np.float64)
    coefficients = np.zeros(0)
    for degree in range(len(spec.nonlinearity) + 2, 10):
        basis = np.stack([read**i for i in range(1, degree + 1)], axis=1)
        scale = np.abs(basis).max(axis=0)
        coefficients = np.linalg.lstsq(basis / scale, true, rcond=None)[0] / scale
        if np.abs(basis @ coefficients - true).max() <= tolerance:
            break
    return [0.0] + [float(c) for c in coefficients]


def instrument_config(spec: SimulationSpec) -> dict:
    """The instrument (as a mapping) for frames simulated with `spec`."""
    config: dict = {
        "name": NAME, "extends": "generic",
        "description": "ccdflow's simulated camera (written by ccdflow.simulator.instrument_yaml)",
        "identify": {"INSTRUME": NAME, "IMAGETYP": "*"},
    }
    for values, what in ((spec.amp_gains, "gains"), (spec.amp_read_noises, "read noises")):
        if len(set(values)) > 1:
            raise ValueError(f"amplifiers with different {what}: the reduction applies one "
                             "value per frame, so no instrument file can describe them")
    # the camera's dark law, as a camera's file states the one measured for it
    law = ({"law": "doubling", "doubling_c": spec.doubling_temperature} if spec.dark_law == "doubling"
           else {"law": "arrhenius", "band_gap_ev": spec.band_gap, "temperature_power": 3.0})
    config["caldb"] = {"dark": {"temperature_law": law}}
    if not spec.detector_keywords:
        config.update(gain=spec.amp_gain(0), read_noise=spec.amp_read_noise(0),
                      saturation=spec.saturation)
    if spec.nonlinearity:
        config["linearity"] = inverse_nonlinearity(spec)
    if spec.amplifiers > 1:
        config["geometry"] = {"amplifiers": [
            {"name": a.name, "overscan": a.section(a.overscan_cols), "trim": a.section(a.data_cols)}
            for a in amp_regions(spec)]}
    return config


def instrument_yaml(spec: SimulationSpec) -> str:
    """`instrument_config` as YAML text, for `ccdflow night --instrument-config FILE`."""
    return yaml.safe_dump(instrument_config(spec), sort_keys=False)
