"""Quicklook PNGs that show something: the image in ZScale grey with its DQ bits (or a bad-pixel
mask's bits alone) in colours and a legend that names each bit and counts its pixels, as a
thumbnail for the report and a full-size PNG (up to :data:`FULL_PX`) to open.

PNGs are shared between runs in ``OUT/quicklook/``, named by the FITS file's size and time, so a
re-run that finds a file unchanged draws nothing again and every run's report keeps its images.
Which frames get one is bounded (:func:`choose_science`): a 300-frame night must not spend
minutes on pictures nobody looks at.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccdflow.framework import dq
from ccdflow.pipeline.naming import safe_component, short_hash
from ccdflow.pipeline.outputs import write_atomic

log = logging.getLogger("ccdflow.night")

#: Longest side of a thumbnail and of a full-size PNG, in image pixels after block reduction.
THUMB_PX, FULL_PX = 360, 2048
#: Bump when the drawing changes, so shared PNGs of unchanged files are drawn again.
DRAWING_VERSION = 2
#: Science quicklooks per run: every QA-flagged frame up to FLAGGED, the raw file of every failed
#: frame up to FAILED, and OTHERS more spread evenly through the night.
FLAGGED, FAILED, OTHERS = 40, 20, 8
RULE = (f"Quicklooks: every master; science frames flagged by QA (up to {FLAGGED}); the raw file of "
        f"failed frames (up to {FAILED}); and {OTHERS} other frames spread evenly through the night. "
        "Thumbnails show blocks of pixels (a flagged pixel colours its block); click one for the "
        f"full-size PNG (up to {FULL_PX} px), or the FITS link for the file itself.")

#: Colour of each DQ bit; where a pixel has several, the one later in this order is drawn (a
#: defect over a cosmic ray over a source), so the legend's counts can exceed what is seen.
COLOURS: dict[int, str] = {
    dq.SOURCE: "#80b1d3", dq.MASKED: "#ffed6f", dq.NO_DATA: "#b15928", dq.NON_FINITE: "#6a3d9a",
    dq.FLAT_LOW: "#1f78b4", dq.COSMIC_RAY: "#33a02c", dq.SATURATED: "#ff7f00",
    dq.UNSTABLE: "#e31a9c", dq.LOW: "#00bcd4", dq.HOT: "#e31a1c",
}


@dataclass(frozen=True)
class Quicklook:
    """Paths relative to OUT: the thumbnail, the full-size PNG and the FITS file drawn."""

    thumb: str
    full: str
    fits: str
    bits: dict[str, int]  # DQ bit name -> pixels carrying it

    def as_dict(self) -> dict[str, Any]:
        return {"thumb": self.thumb, "full": self.full, "fits": self.fits, "bits": self.bits}


def choose_science(science: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """(entry, file to draw) for the science frames :data:`RULE` picks."""
    with_product = [s for s in science if s["status"] in ("reduced", "up-to-date")]
    flagged = [s for s in with_product if s.get("qa_flags")][:FLAGGED]
    failed = [s for s in science if s["status"] == "failed" and s.get("raw")][:FAILED]
    rest = [s for s in with_product if not s.get("qa_flags")]
    step = max(1, math.ceil(len(rest) / OTHERS)) if rest else 1
    others = rest[::step][:OTHERS]
    return ([(s, s["path"]) for s in flagged] + [(s, s["raw"]) for s in failed]
            + [(s, s["path"]) for s in others])


def quicklook(fits_path: str | Path, outdir: Path) -> Quicklook | None:
    """The shared thumbnail and full-size PNG of a FITS file (drawn when not there yet); None
    when the file cannot be read (a quicklook never fails the report: the reason is logged)."""
    fits_path = Path(fits_path)
    try:
        stat = fits_path.stat()
        rel = out_relative(fits_path, outdir)
        stem = safe_component(rel.removesuffix(".fits").replace("/", "__").replace("..", "up"), 120)
        key = short_hash(str(fits_path.resolve()), stat.st_size, stat.st_mtime_ns, DRAWING_VERSION,
                         length=8)
        looks = outdir / "quicklook"
        thumb, full = looks / f"{stem}.{key}.thumb.png", looks / f"{stem}.{key}.png"
        data, bits = load_image(fits_path)
        counts = ({dq.TABLE[b][0]: int(np.count_nonzero(bits & b)) for b in dq.TABLE
                   if np.any(bits & b)} if bits is not None else {})
        if not (thumb.is_file() and full.is_file()):
            title = fits_path.name
            _draw(data, bits, counts, title, thumb, THUMB_PX)
            _draw(data, bits, counts, title, full, FULL_PX)
        return Quicklook(out_relative(thumb, outdir), out_relative(full, outdir), rel, counts)
    except Exception as exc:  # a quicklook must never fail the report
        log.warning("no quicklook for %s: %s: %s", fits_path, type(exc).__name__, exc)
        return None


def out_relative(path: str | Path, outdir: str | Path) -> str:
    """``path`` relative to OUT (with ``..`` for a raw file outside it), '/'-separated: every
    path in the report is, so both copies of the page (OUT/ and OUT/runs/<id>/) link alike."""
    return Path(os.path.relpath(Path(path).resolve(), Path(outdir).resolve())).as_posix()


def load_image(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(pixel values or None, DQ bits or None): a bad-pixel mask is bits only (its SCI holds
    them), a product is SCI with its MASK bits, a raw file is its first 2-D image."""
    from astropy.io import fits

    from ccdflow.framework.io import cards
    from ccdflow.framework.io.fitsio import read_product

    with fits.open(path, memmap=False) as hdul:
        primary = hdul[0].header
        if cards.MTYPE.get(primary) == "bpm":
            return None, np.asarray(hdul["SCI"].data).astype(dq.DTYPE)
        has_sci = "SCI" in hdul
        if not has_sci:
            for hdu in hdul:
                if hdu.data is not None and np.ndim(hdu.data) >= 2:
                    image = np.asarray(hdu.data, np.float32)
                    return image.reshape(image.shape[-2:]) if image.ndim == 2 else image[0], None
            raise ValueError("no image in the file")
    ccd = read_product(path)
    return np.asarray(ccd.data, np.float32), dq.of(ccd)


def _reduce(data: np.ndarray | None, bits: np.ndarray | None, max_px: int
            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Blocks of pixels down to ``max_px`` on the longest side: the mean of values, the OR of
    bits (one flagged pixel colours its block, so a hot pixel survives the thumbnail)."""
    from astropy.nddata import block_reduce

    shape = (data if data is not None else bits).shape  # type: ignore[union-attr]
    factor = max(1, math.ceil(max(shape) / max_px))
    if factor == 1:
        return data, bits
    values = None if data is None else block_reduce(data, factor, func=np.nanmean)
    flags = None if bits is None else block_reduce(bits, factor, func=np.bitwise_or.reduce).astype(dq.DTYPE)
    return values, flags


def rgb(data: np.ndarray | None, bits: np.ndarray | None, limits: tuple[float, float]) -> np.ndarray:
    """An RGB image: ZScale grey values (white where there are none, as for a mask), each DQ bit
    painted in its colour."""
    from matplotlib.colors import to_rgb

    shape = (data if data is not None else bits).shape  # type: ignore[union-attr]
    if data is None:
        out = np.full((*shape, 3), 0.96, np.float32)
    else:
        lo, hi = limits
        grey = np.clip((np.nan_to_num(data, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
        out = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if bits is not None:
        for bit, colour in COLOURS.items():
            out[(bits & bit) != 0] = to_rgb(colour)
    return out


def _limits(data: np.ndarray | None, bits: np.ndarray | None) -> tuple[float, float]:
    from astropy.visualization import ZScaleInterval

    if data is None:
        return 0.0, 1.0
    good = np.isfinite(data) if bits is None else np.isfinite(data) & (bits == 0)
    if not good.any():
        return 0.0, 1.0
    lo, hi = ZScaleInterval().get_limits(data[good])
    return float(lo), float(hi)


def _draw(data: np.ndarray | None, bits: np.ndarray | None, counts: dict[str, int], title: str,
          png: Path, max_px: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    limits = _limits(data, bits)
    shown_data, shown_bits = _reduce(data, bits, max_px)
    image = rgb(shown_data, shown_bits, limits)
    height, width = image.shape[:2]
    dpi = 100
    legend = [Patch(color=COLOURS[bit], label=f"{name} {dq.TABLE[bit][1]}: {counts[name]} px")
              for bit, (name, _) in dq.TABLE.items() if name in counts]
    if bits is not None and not legend:
        legend = [Patch(color="white", label="no pixel flagged")]
    width_in = max(width / dpi, 3.6)
    fig = Figure(figsize=(width_in, height / dpi * width_in / (width / dpi) + 0.4 + 0.17 * len(legend)),
                 dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(image, origin="lower", interpolation="nearest")
    scale = "" if data is None else f" (ZScale {limits[0]:.4g} .. {limits[1]:.4g})"
    ax.set_title("\n".join(textwrap.wrap(title + scale, 60)), fontsize=7)
    ax.set_axis_off()
    if legend:
        fig.legend(handles=legend, loc="outside lower center", fontsize=6.5, ncols=1, frameon=False)
    write_atomic(png, lambda tmp: _save_indexed(fig, tmp, dpi))


def _save_indexed(fig: Any, path: Path, dpi: int) -> None:
    """A 256-colour PNG: noise does not compress, so RGBA costs 2.5 MB for a 1k x 1k frame where
    a palette of greys and the DQ colours costs 0.9 MB (a 300-frame night keeps ~60 of them)."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()  # the figure's own pixels: no PNG of it encoded only to be decoded again
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    # zlib's default level: optimize=True took 3x as long for 2 % fewer bytes (measured, issue 16)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, format="PNG")
