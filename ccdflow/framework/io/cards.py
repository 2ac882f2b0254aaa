"""ccdflow's own header cards, each defined once: keyword, comment, type, how to read it back.

Masters and products carry normalised ``CF_`` cards so the caldb, the pipeline and the report
read one vocabulary whatever the camera wrote. Builders write them with :meth:`Card.put`,
readers use :meth:`Card.get` (typed, with a default when absent); a card private to one step
(its counts, its parameters) stays in that step's module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from astropy.io import fits


@dataclass(frozen=True)
class Card:
    """One header card: its keyword, the comment written with it and the type read back."""

    keyword: str
    comment: str = ""
    kind: type = str

    def put(self, header: fits.Header, value: Any, comment: str | None = None) -> None:
        """Write ``value`` with this card's comment (or ``comment``); a card without a comment
        is written bare (long checksums and reasons keep their full length)."""
        text = self.comment if comment is None else comment
        # a text value that needs the card's whole width (a master's file name, with the camera
        # in it) is written bare: astropy would cut the comment with a warning per product
        fits_in_card = not isinstance(value, str) or len(value) + len(text or "") + 16 <= 80
        header[self.keyword] = (value, text) if text and fits_in_card else value

    def get(self, header: fits.Header | dict, default: Any = None) -> Any:
        """The value as this card's type, or ``default`` when absent or empty."""
        value = header.get(self.keyword)
        if value is None or (isinstance(value, str) and value.strip() == "" and self.kind is not str):
            return default
        return self.kind(value.strip() if isinstance(value, str) else value)

    def __str__(self) -> str:
        return self.keyword


@dataclass(frozen=True)
class Numbered:
    """A family of cards ``<prefix>0001``, ``<prefix>0002``... (one per input)."""

    prefix: str
    comment: str = ""

    def at(self, i: int) -> Card:
        """The card of input ``i`` (1-based, as written)."""
        return Card(f"{self.prefix}{i:04d}", self.comment)


# -- what a master is: the caldb reads these ----------------------------------------------------
MTYPE = Card("CF_MTYPE", "master calibration type")
INST = Card("CF_INST", "ccdflow instrument config")
DET = Card("CF_DET", "detector")
EXPT = Card("CF_EXPT", "mean exposure of inputs (s)", float)
FILT = Card("CF_FILT", "filter ('' when none)")
DATE = Card("CF_DATE", "mean observation time of inputs (UTC)")
TFIRS = Card("CF_TFIRS", "first input (UTC)")
TLAST = Card("CF_TLAST", "last input (UTC)")
TEMP = Card("CF_TEMP", "mean detector temperature of inputs (C)", float)
TSPRD = Card("CF_TSPRD", "std of input temperatures (C)", float)
BIN = Card("CF_BIN", "binning x by y")
READM = Card("CF_READM", "readout mode")
RAWSH = Card("CF_RAWSH", "raw shape (ny x nx) of inputs")
#: Camera identity (FrameMeta.camera: INSTRUME, plus ' #<serial>'), so two cameras that share an
#: instrument config never share masters; '' when the inputs' headers did not name one.
CAM = Card("CF_CAM", "camera of inputs ('' when not known)")
#: A CMOS camera's gain and offset *settings* (FrameMeta.gain_setting/offset, unitless text as
#: the camera wrote them: GAIN = 120 is a setting, not e-/ADU); '' when the headers had none.
GSET = Card("CF_GSET", "gain setting of inputs (not e-/ADU)")
OFFS = Card("CF_OFFS", "offset setting of inputs")
#: The cards that say which setup a master belongs to (compared before it is applied).
SETUP = (INST, DET, BIN, READM, RAWSH, CAM, GSET, OFFS)

# -- how it was made ---------------------------------------------------------------------------------
METH = Card("CF_METH", "combine method")
CLIP = Card("CF_CLIP", "rejection")
FALLB = Card("CF_FALLB", "rejection fallback used")
FEWIN = Card("CF_FEWIN", "fewer inputs than the type's warn_below")
NNAN = Card("CF_NNAN", "NaN/inf input pixels masked", int)
NEXCL = Card("CF_NEXCL", "inputs left out (CF_Xnnnn: why)", int)
MKEY = Card("CF_MKEY", "build identity: inputs, recipe, calibrations")
VERS = Card("CF_VERS", "ccdflow version")
CHASH = Card("CF_CHASH", "ccdflow config hash")
INPUT = Numbered("CF_I", "input file")
INPUT_SHA = Numbered("CF_S")
LEFT_OUT = Numbered("CF_X")

# -- statistics the caldb tracks -----------------------------------------------------------------
MED = Card("CF_MED", "median of the master", float)
NOISE = Card("CF_NOISE", "3-sigma clipped std of the master", float)
LEVEL = Card("CF_LEVEL", "level of the inputs (ADU)", float)
DKRT = Card("CF_DKRT", "median dark rate (ADU/s)", float)
MASKF = Card("CF_MASKF", "fraction of pixels masked (no input)", float)

# -- what a product was made from --------------------------------------------------------------
RAW = Card("CF_RAW", "raw input file")
RAWS = Card("CF_RAWS")
NBAD = Card("CF_NBAD", "non-finite raw pixels, masked", int)
#: Values the instrument told ccdflow to assume (its ``assume:``) because neither the header nor
#: the config gives them: nobody measured them, so the night report flags every frame using one.
AGAIN = Card("CF_AGAIN", "gain ASSUMED, not measured (e-/ADU)", float)
ARDN = Card("CF_ARDN", "read noise ASSUMED, not measured (e-)", float)
#: The uncertainty step saw pixel values that still hold the electronic pedestal (neither
#: overscan nor a master bias applied): its Poisson term counts the pedestal as signal.
TSEC = Card("CF_TSEC", "raw section(s) kept by trim")
UPED = Card("CF_UPED", "Poisson noise includes the bias pedestal", bool)


def assumptions(header: fits.Header | dict) -> list[str]:
    """One line per assumed value a product or master carries (empty when none)."""
    lines = [f"{what} {value:g} {unit} assumed (instrument `assume:`), not measured"
             for card, what, unit in ((AGAIN, "gain", "e-/ADU"), (ARDN, "read noise", "e-"))
             if (value := card.get(header)) is not None]
    if UPED.get(header):
        lines.append("uncertainty: Poisson noise counted the bias pedestal (no overscan or master "
                     "bias applied), so UNCERT is too large")
    return lines


def calibration_file(tag: str, kind: str) -> Card:
    """The file name of the master ``kind`` a product used (``CF_BIASF``)."""
    return Card(f"CF_{tag}F", f"master {kind} file")


def calibration_sha(tag: str) -> Card:
    """The SHA-256 of the bytes of that master (``CF_BIASS``)."""
    return Card(f"CF_{tag}S")


def calibration_id(tag: str, kind: str) -> Card:
    """Its caldb record (``CF_BIASI``)."""
    return Card(f"CF_{tag}I", f"master {kind} caldb id", int)


def calibration_absent(tag: str, kind: str) -> Card:
    """Why a frame has no master ``kind`` (``CF_DARKN``: not taken by the camera, or optional and
    none matched); no comment, so the reason is kept whole."""
    return Card(f"CF_{tag}N")
