"""Small fakes for tests: frame metadata, a frame, and an instrument with real geometry.

Sizes are tiny on purpose (40 x 68 raw pixels, 8 overscan columns on the right) so a test
that runs a step or a whole recipe on them takes milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.instrument import Instrument

#: Raw shape (ny, nx) of the fake camera: 60 data columns, then 8 overscan columns.
FAKE_RAW_SHAPE = (40, 68)

#: The fake camera as it would be written in YAML; ``fake_instrument(**overrides)`` merges into it.
FAKE_INSTRUMENT: dict[str, Any] = {
    "name": "fake-cam",
    "description": "ccdflow.testing's fake camera: 40x68 raw, overscan on the right, one amplifier",
    # empty identify: never claims a file by its headers, so it cannot steal another test's frames
    "identify": {},
    "header": {
        "frame_type": {"keyword": ["IMAGETYP"], "required": True,
                       "values": {"bias*": "bias", "dark*": "dark", "*flat*": "flat",
                                  "light*": "science", "object*": "science"}},
        "exposure_time": {"keyword": ["EXPTIME"], "required": True, "unit": "s"},
        "date_obs": {"keyword": ["DATE-OBS"], "required": True},
        "filter": {"keyword": ["FILTER"]},
        "temperature": {"keyword": ["CCD-TEMP"], "unit": "C"},
    },
    "gain": 1.5,
    "read_noise": 5.0,
    "saturation": 60000.0,
    "geometry": {"amplifiers": [{"name": "A", "overscan": "[61:68,1:40]", "trim": "[1:60,1:40]"}]},
}


def make_meta(**overrides: Any) -> FrameMeta:
    """FrameMeta of a 60 s V-band science frame of the generic instrument; any field overridable."""
    from ccdflow.framework.engine.frame import FrameMeta

    values: dict[str, Any] = dict(
        path="frame.fits", frame_type="science", instrument="generic", exposure_time=60.0,
        filter="V", date_obs=datetime(2026, 3, 1, 22, tzinfo=UTC), temperature=-20.0,
        shape=(40, 60),
    )
    values.update(overrides)
    return FrameMeta(**values)


def make_ccd(
    data: Any = None,
    *,
    shape: tuple[int, int] = FAKE_RAW_SHAPE,
    level: float = 1000.0,
    noise: float = 0.0,
    seed: int = 0,
    unit: str = "adu",
    mask: Any = None,
    uncertainty: Any = None,
    header: Any = None,
) -> CCDData:
    """A float32 CCDData: ``data`` as given, or ``level`` plus Gaussian ``noise`` over ``shape``.

    ``uncertainty`` is a standard deviation (a number or an array); ``header`` a dict or Header.
    """
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData, StdDevUncertainty

    if data is None:
        pixels = np.full(shape, level, np.float32)
        if noise:
            pixels += np.random.default_rng(seed).normal(0.0, noise, shape).astype(np.float32)
    else:
        pixels = np.asarray(data, dtype=np.float32)
    if uncertainty is not None:
        sigma = np.broadcast_to(np.asarray(uncertainty, np.float32), pixels.shape).copy()
        uncertainty = StdDevUncertainty(sigma)
    if mask is not None:
        mask = np.asarray(mask, bool)
    cards = header if isinstance(header, fits.Header) else fits.Header(dict(header or {}))
    return CCDData(pixels, unit=unit, mask=mask, uncertainty=uncertainty, header=cards)


def fake_instrument(**overrides: Any) -> Instrument:
    """The fake camera (:data:`FAKE_INSTRUMENT`) with ``overrides`` merged in, validated.

    Mappings merge key by key (``geometry={"overscan_keyword": None}`` keeps the amplifiers);
    anything else, lists included, replaces the value.
    """
    from ccdflow.framework.engine.config import deep_merge
    from ccdflow.framework.engine.instrument import Instrument

    return Instrument.model_validate(deep_merge(FAKE_INSTRUMENT, overrides))
