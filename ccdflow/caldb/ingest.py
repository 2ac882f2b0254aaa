"""Master FITS file -> calibration record fields, from ccdflow's CF_ cards or a header map."""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from ccdflow.caldb.selection import utc
from ccdflow.framework.calibrations import find_type
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import binning_text, shape_text
from ccdflow.framework.engine.header_spec import KeywordSpec
from ccdflow.framework.headers.bayer import CHANNELS, channel_keyword
from ccdflow.framework.headers.header_map import normalise
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_headers, sha256_file

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REQUIRED = tuple(c.keyword for c in (cards.MTYPE, cards.INST, cards.DATE, cards.BIN, cards.RAWSH))


def _image_hdu(path: Path) -> tuple[fits.Header, np.ndarray]:
    """The primary header and the pixels (SCI extension when present, else the first image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header.copy()
                for hdu in ([hdul["SCI"]] if "SCI" in hdul else []) + list(hdul):
                    if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                        return header, np.asarray(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise UnprocessableInputError(f"not a readable FITS file ({exc})", path=str(path)) from None
    raise UnprocessableInputError("no 2-D image in the file", path=str(path))


def _time(header: fits.Header, key: str, path: Path) -> datetime | None:
    if key not in header:
        return None
    try:
        return utc(datetime.fromisoformat(str(header[key]).strip().replace("Z", "")))
    except ValueError:
        raise UnprocessableInputError("time cannot be parsed", path=str(path), keyword=key,
                                      value=header[key], expected="ISO 8601 UTC") from None


def _stats(kind: str, data: np.ndarray, header: fits.Header, exposure: float | None) -> dict:
    """The statistics the caldb tracks: median, noise and level (a ccdflow master carries them
    in its header already), and what the calibration type adds (a dark's rate); a type no
    installed plugin knows gets the common ones."""
    needs_pixels = cards.MED.keyword not in header or cards.NOISE.keyword not in header
    finite = data[np.isfinite(data)] if needs_pixels else data[:0]
    if cards.MED.keyword in header:
        median = float(header[cards.MED.keyword])
    elif finite.size:
        median = float(np.median(finite))
    else:
        return {}
    if cards.NOISE.keyword in header:
        noise = float(header[cards.NOISE.keyword])
    else:
        noise = 1.4826 * float(np.median(np.abs(finite - median)))
    stats: dict[str, float] = {"median": median, "noise": noise}
    if cards.LEVEL.keyword in header:
        stats["level"] = float(header[cards.LEVEL.keyword])
    for name, card in (("median", cards.MED), ("noise", cards.NOISE), ("level", cards.LEVEL),
                       ("dark_rate", cards.DKRT)):  # a colour sensor's, per channel: median_R...
        for channel in CHANNELS:
            if (key := channel_keyword(card.keyword, channel)) in header:
                stats[f"{name}_{channel}"] = float(header[key])
    caltype = find_type(kind)
    return stats if caltype is None else caltype.ingest_stats(stats, header, data, exposure)


_SHAPE = re.compile(r"^\d+x\d+$")
#: Record column -> the master's card: camera identity and CMOS settings.
_IDENTITY = {"camera": cards.CAM, "gain_setting": cards.GSET, "offset": cards.OFFS}


def _checked(header: fits.Header, key: str, path: Path, kind: type, pattern: re.Pattern | None = None,
             expected: str = "") -> Any:
    """A card's value converted to ``kind``, or an error naming the card and its value."""
    if key not in header or header[key] is None or str(header[key]).strip() == "":
        return None
    value = header[key]
    try:
        out = kind(str(value).strip()) if kind is str else kind(value)
    except (TypeError, ValueError):
        out = None
    if out is None or (pattern is not None and not pattern.match(str(out))) or (
            isinstance(out, float) and not np.isfinite(out)):
        raise UnprocessableInputError("nonsense metadata", path=str(path), keyword=key, value=value,
                                      expected=expected or kind.__name__)
    return out


def fields_from_ccdflow_master(path: Path, header: fits.Header, data: np.ndarray) -> dict[str, Any]:
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise UnprocessableInputError(
            "ccdflow master lacks metadata cards", path=str(path), keyword=", ".join(missing),
            expected="cards written by ccdflow's master builder",
        )
    kind = str(header[cards.MTYPE.keyword]).strip()
    exposure = _checked(header, cards.EXPT.keyword, path, float, expected="exposure in seconds")
    n_combined = _checked(header, "NCOMBINE", path, float, expected="a whole number of frames")
    if n_combined is not None and (n_combined != int(n_combined) or n_combined < 1):
        raise UnprocessableInputError("nonsense metadata", path=str(path), keyword="NCOMBINE",
                                      value=header["NCOMBINE"], expected="a whole number >= 1")
    return {
        "type": kind, "instrument": str(header[cards.INST.keyword]).strip(),
        # '' or absent (a master from before ccdflow wrote them): not known, NULL in the caldb
        **{field: _checked(header, card.keyword, path, str) for field, card in _IDENTITY.items()},
        "detector": str(header.get(cards.DET.keyword, "default")).strip(),
        "binning": _checked(header, cards.BIN.keyword, path, str, _SHAPE, "'BXxBY' such as '2x2'"),
        "readout_mode": str(header.get(cards.READM.keyword, "default")),
        "raw_shape": _checked(header, cards.RAWSH.keyword, path, str, _SHAPE, "'NYxNX' such as '1030x1030'"),
        "filter": str(header.get(cards.FILT.keyword, "")).strip() or None,
        "exposure_time": exposure,
        "temperature": _checked(header, cards.TEMP.keyword, path, float, expected="Celsius"),
        "temperature_spread": _checked(header, cards.TSPRD.keyword, path, float, expected="Celsius"),
        "obs_time": _time(header, cards.DATE.keyword, path),
        "obs_start": _time(header, cards.TFIRS.keyword, path),
        "obs_end": _time(header, cards.TLAST.keyword, path),
        "n_combined": None if n_combined is None else int(n_combined),
        "software_version": cards.VERS.get(header), "config_hash": cards.CHASH.get(header),
        "stats": _stats(kind, data, header, exposure),
        "inputs": [(str(header[k]), header.get("CF_S" + k[4:])) for k in header
                   if re.fullmatch(r"CF_I\d{4}", k)],
    }


def fields_from_header_map(path: Path, kind: str, manager: PluginManager, instrument: str | None,
                           raw_shape: str | None, data: np.ndarray) -> dict[str, Any]:
    """A master made elsewhere (e.g. ccdproc): metadata through the instrument's header map."""
    headers = read_headers(path)
    name = instrument or manager.identify(headers)
    if name is None:
        raise UnprocessableInputError(
            "no instrument recognises this header; name one with --instrument", path=str(path)
        )
    inst = manager.instrument(name)
    # The type was given by the user, so it is not read from IMAGETYP & co.
    hmap = inst.header.model_copy(update={"frame_type": KeywordSpec(default=kind)})
    meta = normalise(inst.model_copy(update={"header": hmap}), headers, str(path))
    shape = shape_text(data.shape)
    return {
        "type": kind, "instrument": inst.name, "camera": meta.camera,
        "gain_setting": meta.gain_setting, "offset": meta.offset, "detector": meta.detector,
        "binning": binning_text(meta.binning), "readout_mode": meta.readout_mode,
        "raw_shape": raw_shape or shape, "filter": meta.filter,
        "exposure_time": meta.exposure_time, "temperature": meta.temperature,
        "temperature_spread": None, "obs_time": utc(meta.date_obs), "obs_start": None,
        "obs_end": None, "n_combined": headers[0].get("NCOMBINE"), "software_version": None,
        "config_hash": None, "stats": _stats(kind, data, headers[0], meta.exposure_time),
        "inputs": [],
    }


def read_master(path: str | Path, manager: PluginManager, kind: str | None = None,
                instrument: str | None = None, raw_shape: str | None = None) -> dict[str, Any]:
    """Every column of a calibration record for one file, or an error saying what is wrong."""
    path = Path(path).resolve()
    if not path.is_file():
        raise UnprocessableInputError("file not found", path=str(path))
    header, data = _image_hdu(path)
    if cards.MTYPE.keyword in header:
        fields = fields_from_ccdflow_master(path, header, data)
        if instrument is not None and instrument != fields["instrument"]:
            raise UnprocessableInputError(
                f"--instrument {instrument} contradicts the file", path=str(path), keyword=cards.INST.keyword,
                value=fields["instrument"], expected=instrument,
            )
        if kind is not None and kind != fields["type"]:
            raise UnprocessableInputError(
                f"--type {kind} contradicts the file", path=str(path), keyword=cards.MTYPE.keyword,
                value=fields["type"], expected=kind,
            )
    elif kind is None:
        raise UnprocessableInputError(
            "not a ccdflow master (no CF_MTYPE card); give its type with --type", path=str(path)
        )
    else:
        fields = fields_from_header_map(path, kind, manager, instrument, raw_shape, data)
    if not TYPE_NAME.match(fields["type"]):
        raise UnprocessableInputError("calibration type must be a short lowercase word",
                                      path=str(path), keyword="type", value=fields["type"])
    if fields["obs_time"] is None:
        raise UnprocessableInputError("no observation time", path=str(path), keyword=cards.DATE.keyword)
    fields["shape"] = shape_text(data.shape)
    fields["path"] = str(path)
    fields["sha256"] = sha256_file(path)
    return fields
