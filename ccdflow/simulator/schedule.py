"""The observing plan of a night: which frames, in what order, when, and at what temperature."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.spec import SimulationSpec, file_safe


@dataclass
class SimFrame:
    """One raw frame as written, with the truth that is specific to it."""

    path: Path
    name: str
    frame_type: str  # 'bias' | 'dark' | 'flat' | 'science' | 'sky'
    exptime: float
    filter: str | None
    temperature: float  # C, the value in CCD-TEMP and the one the dark current follows
    date_obs: datetime  # UTC start of exposure, naive
    night: int  # 1-based
    object: str
    bias_offset: float = 0.0  # ADU added to the whole frame (overscan included)
    truth: dict[str, Any] = field(default_factory=dict)  # flat level, sky, PSF, cosmic rays...

    @property
    def band(self) -> str:
        """The filter of a flat or science frame (biases and darks have none)."""
        if self.filter is None:
            raise ValueError(f"simulated {self.frame_type} frame {self.name} has no filter")
        return self.filter

    def summary(self, root: Path) -> dict[str, Any]:
        """JSON-ready description, with the path relative to the simulation's root."""
        return {
            "name": self.name, "path": str(self.path.relative_to(root)),
            "frame_type": self.frame_type, "exptime": self.exptime, "filter": self.filter,
            "temperature": self.temperature, "date_obs": iso_ms(self.date_obs),
            "night": self.night, "object": self.object, "bias_offset_adu": self.bias_offset,
            **self.truth,
        }


def iso_ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


_Request = tuple[str, str, float, str | None, float, str]


def _requests(spec: SimulationSpec) -> list[_Request]:
    """(name stem, type, exptime, filter, set point, OBJECT) in observing order: biases, dusk
    flats, science, then the darks while the cooler is stepped through its set points."""
    cold = spec.dark_temperatures[0]
    out: list[_Request] = [(f"bias_{i:03d}", "bias", 0.0, None, cold, "bias")
                           for i in range(1, spec.n_bias + 1)]
    for f in spec.filters:
        out += [(f"flat_{file_safe(f)}_{i:03d}", "flat", spec.flat_exptime, f, cold, "dome flat")
                for i in range(1, spec.n_flat + 1)]
    warm = cold + spec.science_temperature_offset
    for f in spec.filters:
        if not spec.science_exptimes:
            out += [(f"sci_{file_safe(f)}_{i:03d}", "science", spec.science_exptime, f, warm,
                     "simfield") for i in range(1, spec.n_science + 1)]
        for t in spec.science_exptimes:
            out += [(f"sci_{file_safe(f)}_{t:g}s_{i:03d}", "science", t, f, warm, "simfield")
                    for i in range(1, spec.n_science + 1)]
    for f in spec.fringe:  # night-sky frames between the science, where the fringes are
        out += [(f"sky_{file_safe(f)}_{i:03d}", "sky", spec.science_exptime, f, cold,
                 "blank sky") for i in range(1, spec.n_sky + 1)]
    for temp in spec.dark_temperatures:
        for t in spec.dark_exptimes:
            out += [(f"dark_{t:g}s_{temp:+.0f}C_{i:03d}", "dark", t, None, temp, "dark")
                    for i in range(1, spec.n_dark + 1)]
    return out


def plan_night(spec: SimulationSpec, night: int, raw_dir: Path) -> list[SimFrame]:
    """Frames of night `night`, each starting `readout_time` after the previous one ends."""
    moment = spec.start + timedelta(days=night - 1)
    frames = []
    for stem, kind, exptime, filt, set_point, obj in _requests(spec):
        name = f"n{night}_{stem}"
        rng = rng_for(spec.seed, name, "plan")
        jitter = spec.temperature_jitter
        temperature = round(set_point + rng.uniform(-jitter, jitter), 3)
        offset = round(float(rng.normal(0.0, spec.bias_offset_sigma)), 4)
        frames.append(SimFrame(
            path=raw_dir / f"{name}.fits", name=name, frame_type=kind, exptime=exptime,
            filter=filt, temperature=temperature, date_obs=moment, night=night, object=obj,
            bias_offset=offset))
        moment += timedelta(seconds=exptime + spec.readout_time)
    return frames
