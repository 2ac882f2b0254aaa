"""What to simulate: one validated model holding every knob of a simulated observing run."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BOLTZMANN_EV = 8.617333262e-5  # eV/K


def file_safe(name: str) -> str:
    """A filter name as it appears in file names."""
    return re.sub(r"[^A-Za-z0-9.+-]", "_", name)


class SimulationSpec(BaseModel):
    """Detector, schedule and sky of a simulated run; the defaults give a small, fast night."""

    model_config = ConfigDict(extra="forbid")

    # geometry and schedule
    shape: tuple[int, int] = Field(
        (256, 256), description="(ny, nx) of the illuminated data area in pixels.")
    overscan: int = Field(
        32, ge=0, description="Overscan columns appended on the right of every raw frame.")
    prescan: int = Field(
        0, ge=0, description="Prescan columns before the data area (one amplifier only): "
        "unexposed, read before the data, bias only.")
    n_bias: int = Field(5, ge=0, description="Bias frames per night.")
    n_dark: int = Field(4, ge=0, description="Dark frames per (exposure time, temperature) pair.")
    dark_exptimes: tuple[float, ...] = Field(
        (30.0, 120.0), description="Dark exposure times in seconds.")
    dark_temperatures: tuple[float, ...] = Field(
        (-20.0, -14.0), min_length=1,
        description="CCD set points (C) for darks; bias, flats and science use the first one.")
    n_flat: int = Field(3, ge=0, description="Dome flats per filter per night.")
    flat_level: float = Field(
        20000.0, gt=0, description="Median dome-flat signal in electrons (varies ~3% per frame).")
    flat_exptime: float = Field(5.0, gt=0, description="Dome-flat exposure time in seconds.")
    filters: tuple[str, ...] = Field(("V", "R"), description="Filters for flats and science.")
    n_science: int = Field(2, ge=0, description="Science frames per filter per night.")
    science_exptime: float = Field(60.0, gt=0, description="Science exposure time in seconds.")
    science_exptimes: tuple[float, ...] = Field(
        (), description="Several science exposure times (s): n_science frames of each, named "
        "sci_<filter>_<t>s_<i>; empty: science_exptime only (names sci_<filter>_<i>).")
    science_temperature_offset: float = Field(
        0.0, description="Science frames are taken this many degrees C warmer than the first "
        "set point (a cooler that cannot hold its set point on a warm night).")
    temperature_jitter: float = Field(
        0.1, ge=0, description="Half-width (C) of the uniform scatter of CCD-TEMP around each "
        "set point: the cooler's regulation.")
    nights: int = Field(
        1, ge=1, description="Nights; each gets its own bias/dark/flat/science set.")
    seed: int = Field(42, ge=0, description="Master seed; the same seed gives identical pixels.")
    start: datetime = Field(
        datetime(2026, 3, 1, 20, 0, 0),
        description="UTC start of night 1 (naive means UTC); night k starts k-1 days later.")
    readout_time: float = Field(
        10.0, ge=0, description="Seconds between the end of one exposure and the next start.")

    # detector
    detector_keywords: bool = Field(
        True, description="Write GAIN, RDNOISE and SATURATE; False: the headers hold none of "
        "them and the instrument YAML must give them (simulator.instrument_yaml writes one).")
    gain: float = Field(1.5, gt=0, description="Gain in e-/ADU.")
    read_noise: float = Field(5.0, ge=0, description="Read noise in electrons.")
    bias_level: float = Field(1000.0, ge=0, description="Bias level of night 1 in ADU.")
    bias_offset_sigma: float = Field(
        2.0, ge=0, description="Frame-to-frame bias level jitter (ADU), tracked by the overscan.")
    bias_drift: float = Field(
        3.0, ge=0, description="Night-to-night random walk of the bias level (ADU per night).")
    dark_rate: float = Field(
        0.05, ge=0, description="Median dark current in e-/s/pixel at ref_temperature.")
    ref_temperature: float = Field(-20.0, description="Temperature (C) at which dark_rate holds.")
    doubling_temperature: float = Field(
        6.0, gt=0, description="Dark current doubles every this many degrees C (dark_law "
        "'doubling').")
    dark_law: Literal["doubling", "arrhenius"] = Field(
        "doubling", description="How dark current follows temperature: 'doubling' (x2 every "
        "doubling_temperature) or 'arrhenius' (rate ~ T**3 exp(-band_gap / 2kT), T in kelvin).")
    band_gap: float = Field(
        1.12, gt=0, description="Band gap in eV of the 'arrhenius' dark law (silicon: 1.12).")
    amp_glow: float = Field(
        0.0, ge=0, description="Amplifier glow: extra dark current (e-/s at ref_temperature, "
        "following the dark law) at the pixel next to each amplifier, decaying exponentially.")
    amp_glow_scale: float = Field(
        12.0, gt=0, description="e-folding distance (pixels) of the amplifier glow.")
    amp_glow_thermal: bool = Field(
        True, description="The glow follows the dark law like the rest of the dark current "
        "(and is part of dark_rate.fits); False: the same e-/s at every temperature (amplifier "
        "luminescence), written only to glow.fits.")
    nonlinearity: tuple[float, ...] = Field(
        (), description="Forward non-linearity in level-free ADU: read = s + k2 s**2 + k3 s**3 "
        "... for true signal s; the tuple is (k2, k3, ...). Empty: linear.")
    amplifiers: Literal[1, 2, 4] = Field(
        1, description="Readout amplifiers: 1 (overscan on the right), 2 (left and right "
        "halves) or 4 (quadrants); several split the overscan columns into a prescan on each "
        "side, each amplifier with its own rows of it.")
    amp_bias_offsets: tuple[float, ...] = Field(
        (), description="Bias level of each amplifier relative to bias_level (ADU); empty: 0.")
    amp_gains: tuple[float, ...] = Field(
        (), description="Gain (e-/ADU) of each amplifier; empty: `gain` for all.")
    amp_read_noises: tuple[float, ...] = Field(
        (), description="Read noise (e-) of each amplifier; empty: `read_noise` for all.")
    hot_pixel_fraction: float = Field(
        0.004, ge=0, le=0.1, description="Fraction of pixels that are hot (10-100x dark rate).")
    dead_pixel_fraction: float = Field(
        0.001, ge=0, le=0.1,
        description="Fraction of pixels that are dead or low (response 0-0.3).")
    saturation: float = Field(
        60000.0, gt=0, le=65535, description="Raw level (ADU) at which pixels saturate.")
    prnu: float = Field(0.01, ge=0, description="Pixel response non-uniformity (Gaussian sigma).")
    vignetting: float = Field(
        0.15, ge=0, lt=0.9, description="Fractional illumination loss at the corners.")

    # sky
    sky_rates: dict[str, float] = Field(
        default_factory=dict,
        description="Sky e-/s/pixel per filter; missing filters use a built-in table (100-500).")
    n_stars: int = Field(40, ge=0, description="Unsaturated stars per field.")
    n_saturated_stars: int = Field(
        2, ge=0, description="Extra stars bright enough to saturate and bleed.")
    fwhm: float = Field(3.0, gt=0, description="Median seeing FWHM in pixels.")
    trail: float = Field(
        0.0, ge=0, description="Drift of the telescope along x during each science exposure "
        "(pixels): every star is smeared evenly over a line this long (a tracking or guiding "
        "failure); 0: none.")
    cosmic_ray_energy: tuple[float, float] = Field(
        (1000.0, 20000.0), description="Range (e-) of the strongest pixel of a cosmic-ray "
        "event, drawn log-uniform.")
    cosmic_ray_charge_truth: bool = Field(
        False, description="Also write each exposed frame's deposited cosmic-ray charge "
        "(truth/crq_<name>.fits, e-), to judge detection by signal-to-noise.")
    cosmic_ray_rate: float = Field(
        2.0, ge=0,
        description="Cosmic-ray events per megapixel per second of exposure (exaggerated so "
                    "small frames get several).")
    fringe: dict[str, float] = Field(
        default_factory=dict,
        description="Fringe strength per filter: the fringe pattern's RMS as a fraction of the "
                    "sky level (e.g. {'I': 0.02}); filters not listed have no fringes.")
    n_sky: int = Field(
        0, ge=0, description="Night-sky frames (blank fields, IMAGETYP SKY, science exposure "
                             "time) per filter that has fringes: the inputs of a fringe frame.")

    @field_validator("shape")
    @classmethod
    def _shape_big_enough(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 32:
            raise ValueError(f"shape {value}: both axes must be at least 32 pixels")
        return value

    @field_validator("dark_exptimes")
    @classmethod
    def _exptimes_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(t <= 0 for t in value):
            raise ValueError(f"dark_exptimes {value}: every exposure time must be > 0 s")
        return value

    @field_validator("start")
    @classmethod
    def _start_in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    @field_validator("filters")
    @classmethod
    def _filters_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        safe = {file_safe(f) for f in value}
        if len(safe) != len(value) or any(not f.strip() for f in value):
            raise ValueError(f"filters {value}: names must be non-empty and distinct in file "
                             "names (characters other than A-Z a-z 0-9 . + - become '_')")
        return value

    @model_validator(mode="after")
    def _fringes_in_filters(self) -> SimulationSpec:
        unknown = sorted(set(self.fringe) - set(self.filters))
        if unknown or any(v < 0 for v in self.fringe.values()):
            raise ValueError(f"fringe {self.fringe}: every filter must be one of {self.filters} "
                             f"(not {unknown}) with a strength >= 0")
        return self

    @model_validator(mode="after")
    def _amplifiers_fit(self) -> SimulationSpec:
        n = self.amplifiers
        for name in ("amp_bias_offsets", "amp_gains", "amp_read_noises"):
            values = getattr(self, name)
            if values and len(values) != n:
                raise ValueError(f"{name} {values}: give one value per amplifier ({n})")
        if any(g <= 0 for g in self.amp_gains) or any(r < 0 for r in self.amp_read_noises):
            raise ValueError("amp_gains must be > 0 and amp_read_noises >= 0")
        if n > 1 and self.prescan:
            raise ValueError(f"prescan {self.prescan}: several amplifiers already read a "
                             "prescan each (the overscan columns split in two)")
        if n > 1 and (self.overscan < 4 or self.overscan % 2 or self.shape[1] % 2
                      or (n == 4 and self.shape[0] % 2)):
            raise ValueError(f"{n} amplifiers need an even overscan >= 4 (got {self.overscan}) "
                             f"and even data axes they split (shape {self.shape})")
        stems = {f"{t:+.0f}" for t in self.dark_temperatures}
        if len(stems) != len(self.dark_temperatures):
            raise ValueError(f"dark_temperatures {self.dark_temperatures}: set points must differ "
                             "by at least a degree after rounding (they name the files)")
        if self.cosmic_ray_energy[0] <= 0 or self.cosmic_ray_energy[1] < self.cosmic_ray_energy[0]:
            raise ValueError(f"cosmic_ray_energy {self.cosmic_ray_energy}: need 0 < low <= high")
        return self

    def dark_factor(self, temperature: float) -> float:
        """Dark current at `temperature` (C) relative to `ref_temperature`, by `dark_law`."""
        if self.dark_law == "doubling":
            return float(2.0 ** ((temperature - self.ref_temperature) / self.doubling_temperature))
        t, t_ref = temperature + 273.15, self.ref_temperature + 273.15
        return float((t / t_ref) ** 3
                     * math.exp(-self.band_gap / (2 * BOLTZMANN_EV) * (1.0 / t - 1.0 / t_ref)))

    def amp_gain(self, index: int) -> float:
        return self.amp_gains[index] if self.amp_gains else self.gain

    def amp_read_noise(self, index: int) -> float:
        return self.amp_read_noises[index] if self.amp_read_noises else self.read_noise

    @model_validator(mode="after")
    def _saturation_above_bias(self) -> SimulationSpec:
        if self.saturation <= self.bias_level + 1000:
            raise ValueError(f"saturation {self.saturation} ADU must exceed bias_level "
                             f"{self.bias_level} ADU by more than 1000 ADU")
        return self

    @property
    def full_well(self) -> float:
        """Electrons a pixel holds before spilling: the charge that reads as `saturation`."""
        return (self.saturation - self.bias_level) * self.gain

    @property
    def raw_width(self) -> int:
        """Columns of a raw frame: prescan, data area and overscan."""
        return self.prescan + self.shape[1] + self.overscan

    @property
    def read_noise_adu(self) -> float:
        return self.read_noise / self.gain
