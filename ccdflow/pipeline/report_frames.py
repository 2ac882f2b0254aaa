"""The science frames table of report.html: status, why this run did what it did, the per-frame
QA figures (entry ``qa``, from the QA step) with the cells a ``qa_flags`` line names highlighted,
and the distances to each calibration (dt, dT, exposure scaling)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np

e = html.escape

#: column -> pattern of the figure names a QA flag line uses for it (the flag names its figure).
FLAG_PATTERNS: dict[str, str] = {
    "sky": r"\bsky(?![ _-]?noise)\b(?! level noise)",
    "noise": r"noise",
    "fwhm": r"fwhm|seeing",
    "ellipticity": r"ellipticity|elongat|trail",
    "stars": r"n_stars|\bstars?\b",
    "cr": r"cosmic",
    "saturated": r"saturat",
    "masked": r"masked",
}
HEADERS = ["frame", "status", "why", "sky", "sky noise / expected", "FWHM", "ellipticity", "stars",
           "CR px", "saturated %", "masked %", "QA flags", "calibrations", "seconds"]


def frame_name(entry: dict[str, Any]) -> str:
    """A science entry's name in the report: its product path under reduced/, else the raw name."""
    return str(entry.get("product") or Path(entry["raw"]).name)


def reason(entry: dict[str, Any]) -> str:
    """'ErrorClass: one line' for a failure, '' otherwise."""
    why = entry.get("reason", "")
    return f"{entry['error']}: {why}" if why and entry.get("error") else why


def _num(value: Any, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    """``value`` (times ``scale``) in ``fmt``, '' when absent; 'g' formats never go exponential
    (0.0000964 %, not 9.64e-05: a column of percentages is read by its digits)."""
    if value is None:
        return ""
    try:
        number = float(value) * scale
    except (TypeError, ValueError):
        return e(str(value))
    if fmt.endswith("g"):
        digits = int(fmt.strip(".g") or 6)
        return np.format_float_positional(number, precision=digits, fractional=False, trim="-") + unit
    return f"{number:{fmt}}{unit}"


def qa_cells(qa: dict[str, Any] | None) -> dict[str, str]:
    """Each QA column's text; empty where the figure is absent (no QA step ran, or it could not
    measure: no star found has no FWHM)."""
    q = qa or {}
    unit = f" {q['unit']}" if q.get("unit") else ""
    noise = _num(q.get("sky_noise"), ".3g")
    if noise and q.get("expected_noise") is not None:
        noise += " / " + _num(q.get("expected_noise"), ".3g")
    if noise and q.get("noise_ratio") is not None:
        noise += f" (x{_num(q.get('noise_ratio'), '.2f')})"
    fwhm = _num(q.get("fwhm"), ".2f", unit=" px")
    if fwhm and q.get("fwhm_arcsec") is not None:
        fwhm += f' ({_num(q.get("fwhm_arcsec"), ".2f")}")'
    return {"sky": _num(q.get("sky"), ".5g", unit=e(unit)), "noise": noise, "fwhm": fwhm,
            "ellipticity": _num(q.get("ellipticity"), ".2f"), "stars": _num(q.get("n_stars"), ".0f"),
            "cr": _num(q.get("cosmic_pixels"), ".0f"),
            "saturated": _num(q.get("saturated_fraction"), ".3g", 100.0),
            "masked": _num(q.get("masked_fraction"), ".3g", 100.0)}


def flagged_columns(flags: list[str]) -> dict[str, list[str]]:
    """column -> the flag lines that name its figure."""
    out: dict[str, list[str]] = {}
    for flag in flags:
        for column, pattern in FLAG_PATTERNS.items():
            if re.search(pattern, str(flag), re.IGNORECASE):
                out.setdefault(column, []).append(str(flag))
                break  # a line names one figure: the first pattern that matches it
    return out


def calibration_cell(entry: dict[str, Any]) -> str:
    parts = []
    for kind, c in (entry.get("calibrations") or {}).items():
        extra = [f"dt {c['dt_days']:+.2f} d" if c.get("dt_days") is not None else "",
                 f"dT {c['dtemp']:+.1f} C" if c.get("dtemp") is not None else "",
                 f"x{c['scaling']:.3g}" if c.get("scaling") is not None else ""]
        # the caldb id (the masters table lists it) with the file's name on hover
        parts.append(f'<span title="{e(c["name"])}">{e(kind)} #{c["id"]}</span>'
                     + (f" ({e(', '.join(x for x in extra if x))})" if any(extra) else ""))
        # "flat 7 skipped as suspect (its QA figures...)": the figures on hover (the masters
        # table and the problems box show them once)
        parts += [f'<span class="suspect" title="{e(line)}">{e(line.split(" (")[0])}</span>'
                  for line in c.get("skipped", [])]
    # a calibration the camera's file says it never takes is normal (grey); one that was wanted
    # and not found is for attention (orange), as in the problems box
    parts += [f'<span class="{"up-to-date" if why.startswith("not taken") else "skipped"}" '
              f'title="{e(why)}">{e(kind)}: none (see Calibrations not applied)</span>'
              for kind, why in (entry.get("calibrations_absent") or {}).items()]
    return "<br>".join(parts)


def science_row(entry: dict[str, Any], why: str, page: Any) -> list[Any]:
    from ccdflow.pipeline.report_html import status

    cells = qa_cells(entry.get("qa"))
    flags = [str(f) for f in entry.get("qa_flags") or []]
    hits = flagged_columns(flags)
    qa: list[Any] = [(cells[c], "flag") if c in hits else cells[c] for c in FLAG_PATTERNS]
    qa = [(f'<span title="{e("; ".join(hits[c]))}">{cell[0]}</span>', "flag") if isinstance(cell, tuple)
          else cell for c, cell in zip(FLAG_PATTERNS, qa, strict=True)]
    shown = entry["path"] if entry["status"] != "failed" else entry["raw"]
    notes = "; ".join([*entry.get("assumed", []), reason(entry)]).strip("; ")
    failed = entry["status"] == "failed"  # its reason says it all
    why_cell = "<br>".join([*([] if failed else [e(why)]),
                            *([f'<span class="{"failed" if failed else "skipped"}">{e(notes)}</span>']
                              if notes else [])])
    return [page.fits_link(shown, frame_name(entry)) + page.look_link(shown), status(entry["status"]),
            why_cell, *qa,
            "<br>".join(f'<span class="suspect">{e(f)}</span>' for f in flags),
            calibration_cell(entry), f"{entry.get('seconds', 0):.2f}"]


def science_section(data: dict[str, Any], page: Any) -> str:
    from ccdflow.pipeline.report_html import table

    science = data["science"]
    if not science:
        why = ("no frame was stale: every product's calibrations are still the best"
               if data.get("redo_stale") else "no science frame in RAWDIR")
        return f'<h2 id="science">Science frames</h2><p>No science frame in this run: {e(why)}.</p>'
    measured = any(s.get("qa") for s in science)
    note = ("" if measured else "<p>No QA figures: the frames carry none (reduced before the QA "
            "figures existed, or up to date from such a run).</p>")
    rows = [science_row(s, data.get("redo", {}).get(s["raw"], ""), page) for s in science]
    return ('<h2 id="science">Science frames</h2><p>Cells in orange are flagged by QA (hover for '
            "the figure, its threshold and setting). Sky in the product's unit; sky noise against "
            "the noise expected from the sky level, gain and read noise.</p>" + note
            + table(HEADERS, rows))
