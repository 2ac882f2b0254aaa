"""The night's report: ``report.json`` for machines, ``report.html`` with quicklooks for people."""

from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ccdflow import __version__
from ccdflow.pipeline.night import NightResult
from ccdflow.pipeline.outputs import write_atomic, write_text_atomic

log = logging.getLogger("ccdflow.night")

#: How many reduced frames get a quicklook (all masters do).
SCIENCE_QUICKLOOKS = 6


def write_report(result: NightResult, db: Any = None) -> dict[str, Path]:
    """Write report.json, report.html and the PNGs they show; returns their paths."""
    outdir = Path(result.outdir)
    looks = outdir / "quicklook"
    images: dict[str, str] = {}
    for entry in result.masters:
        if entry["status"] in ("built", "up-to-date"):
            images[entry["path"]] = _quicklook(entry["path"], looks / (Path(entry["path"]).stem + ".png"))
    for entry in [s for s in result.science if s["status"] == "reduced"][:SCIENCE_QUICKLOOKS]:
        # products may sit in subfolders of reduced/ with equal names: the PNG name says where
        name = entry.get("product", Path(entry["path"]).name).removesuffix(".fits").replace("/", "__")
        images[entry["path"]] = _quicklook(entry["path"], looks / f"reduced__{name}.png")
    # a caldb that went away is not asked again (the run stopped for that reason)
    history = _history_plots(db, looks) if db is not None and result.stopped is None else {}
    data = {
        "ccdflow_version": __version__, "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": result.counts(), **asdict(result), "warnings": night_warnings(result),
        "quicklooks": {k: v for k, v in images.items() if v}, "history_plots": history,
        "calibrations_absent": absent_calibrations(result),
    }
    paths = {"json": write_text_atomic(outdir / "report.json", json.dumps(data, indent=2, default=str)),
             "html": write_text_atomic(outdir / "report.html", _html(data))}
    return paths


def night_warnings(result: NightResult) -> list[str]:
    """What the night should not pass over, once each with how many products and masters share
    it (an assumed read noise is on every frame of the camera): the first lines of the report."""
    seen: dict[str, int] = {}
    for entry in [*result.masters, *result.science]:
        for warning in entry.get("assumed", []):
            seen[warning] = seen.get(warning, 0) + 1
    return [*result.warnings, *(f"{warning} ({n} file{'s' * (n > 1)})" for warning, n in seen.items())]


def _quicklook(fits_path: str, png: Path) -> str:
    """ZScale PNG of a product's SCI (or primary) image, masked pixels grey; '' if unreadable."""
    try:
        from astropy.visualization import ZScaleInterval
        from matplotlib.figure import Figure

        from ccdflow.framework.io.fitsio import read_product

        ccd = read_product(fits_path)
        data = np.asarray(ccd.data, np.float32)
        finite = np.isfinite(data) if ccd.mask is None else np.isfinite(data) & ~np.asarray(ccd.mask, bool)
        lo, hi = ZScaleInterval().get_limits(data[finite]) if finite.any() else (0.0, 1.0)
        shown = np.ma.masked_array(data, ~finite)
        fig = Figure(figsize=(4, 4 * data.shape[0] / max(1, data.shape[1])), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        cmap = _grey_cmap()
        ax.imshow(shown, origin="lower", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(Path(fits_path).name, fontsize=8)
        ax.set_axis_off()
        write_atomic(png, lambda tmp: fig.savefig(tmp, format="png"))
        return str(png.relative_to(png.parent.parent))
    except Exception as exc:  # a quicklook must never fail the report
        log.warning("no quicklook for %s: %s", fits_path, exc)
        return ""


def _grey_cmap() -> Any:
    from matplotlib import colormaps

    cmap = colormaps["gray"].copy()
    cmap.set_bad("tab:orange")
    return cmap


def _title(kind: str, stat: str) -> str:
    """'bias level', 'dark rate' (not 'dark dark rate')."""
    words = stat.replace("_", " ")
    return words if words.startswith(kind) else f"{kind} {words}"


def _history_plots(db: Any, looks: Path) -> dict[str, str]:
    """The caldb's history of each combined type's statistic, this night included."""
    from ccdflow.caldb.errors import CaldbError
    from ccdflow.caldb.history import history, plot_history
    from ccdflow.framework.calibrations import master_types

    out = {}
    # each combined type's own statistic (bias level, dark rate, flat level, a plugin type's)
    plots = [(t.name, t.trend_stat, _title(t.name, t.trend_stat)) for t in master_types()]
    for kind, stat, title in plots:
        try:
            series = history(db, kind, stat)
            if series:
                path = plot_history(series, looks / f"history_{kind}.png", f"caldb history: {title}")
                out[title] = str(path.relative_to(looks.parent))
        except CaldbError as exc:
            log.info("no %s history plot: %s", title, exc)
        except Exception as exc:  # a plot must never cost the report
            log.warning("no %s history plot: %s: %s", title, type(exc).__name__, exc)
    return out


def absent_calibrations(result: NightResult) -> list[dict[str, Any]]:
    """Calibrations not applied, grouped by type and reason (not taken by the camera, optional
    and none matched), with the masters and frames each one concerns."""
    groups: dict[tuple[str, str], list[str]] = {}
    for entry in [*result.masters, *result.science]:
        for kind, reason in (entry.get("calibrations_absent") or {}).items():
            name = entry.get("product") or entry.get("name") or Path(entry.get("raw", "")).name
            groups.setdefault((kind, reason), []).append(name)
    return [{"type": kind, "reason": reason, "n": len(names), "frames": names}
            for (kind, reason), names in sorted(groups.items())]


def _reason(entry: dict[str, Any]) -> str:
    """'ErrorClass: one line' for a failure, '' otherwise."""
    reason = entry.get("reason", "")
    return f"{entry['error']}: {reason}" if reason and entry.get("error") else reason


def _qa_cell(master: dict[str, Any]) -> str:
    """The master QA of a master registered by this run: a suspect one in orange with its
    figures (it is not chosen until `ccdflow caldb mark-good ID`); '' for the others."""
    from ccdflow.caldb.qa import qa_words

    if not master.get("qa"):
        return ""
    text = html.escape(qa_words(master["qa"]))
    if master.get("quality") == "suspect":
        return (f'<span class="suspect">{text}; not used until accepted: ccdflow caldb mark-good '
                f'{master.get("caldb_id")}</span>')
    return text


def _left_out(master: dict[str, Any]) -> list[str]:
    return [f"left out {Path(path).name}: {why}" for path, why in master.get("excluded", [])]


def _html(data: dict[str, Any]) -> str:
    e = html.escape

    def table(headers: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def status(s: str) -> str:
        return f'<span class="{e(s)}">{e(s)}</span>'

    def cals(entry: dict[str, Any]) -> str:
        parts = []
        for kind, c in (entry.get("calibrations") or {}).items():
            extra = [f"dt {c['dt_days']:+.2f} d" if c.get("dt_days") is not None else "",
                     f"dT {c['dtemp']:+.1f} C" if c.get("dtemp") is not None else "",
                     f"x{c['scaling']:.3g}" if c.get("scaling") is not None else ""]
            parts.append(f"{e(kind)}: {e(c['name'])} (#{c['id']}{', ' if any(extra) else ''}"
                         f"{e(', '.join(x for x in extra if x))})")
            parts += [f'<span class="suspect">{e(line)}</span>' for line in c.get("skipped", [])]
        parts += [f'<span class="skipped" title="{e(why)}">{e(kind)}: none (see Calibrations '
                  "not applied)</span>" for kind, why in (entry.get("calibrations_absent") or {}).items()]
        return "<br>".join(parts)

    looks = data["quicklooks"]
    counts = data["counts"]
    stopped = ([f'<p class="failed">The run stopped before the end: {e(data["stopped"])}. '
                "What was done is listed below; run the same command again once this is fixed "
                "and it carries on.</p>"] if data.get("stopped") else [])
    flagged = [f'<p class="failed">{e(w)}</p>' for w in data["warnings"]]
    if data.get("caldb_as_of"):
        flagged.append(f'<p class="suspect">Calibrations chosen with the caldb as of '
                       f'{e(str(data["caldb_as_of"]))} UTC (--caldb-as-of); masters built by this '
                       "run were written, not registered.</p>")
    sections = [*stopped, *flagged,
        f"<h1>ccdflow night report</h1><p>raw: <code>{e(data['rawdir'])}</code><br>"
        f"out: <code>{e(data['outdir'])}</code><br>caldb: <code>{e(data['caldb'])}</code><br>"
        f"run on: {e(data['executor'])}; ccdflow {e(data['ccdflow_version'])}; "
        f"written {e(data['written'])}</p>",
        "<h2>Summary</h2>" + table(["what", "count"], [
            ["files", counts["files"]], ["unreadable or unknown", counts["unreadable_or_unknown"]],
            *[[f"{k} frames", v] for k, v in sorted(counts["frame_types"].items())],
            *[[f"masters {k}", v] for k, v in sorted(counts["masters"].items())],
            *[[f"science {k}", v] for k, v in sorted(counts["science"].items())],
        ]) + table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in data["seconds"].items()]),
        "<h2>Masters</h2>" + table(["master", "status", "frames", "median", "noise", "QA", "notes"], [
            [e(m["name"]), status(m["status"]), m["n"], m.get("median", ""), m.get("noise", ""),
             _qa_cell(m), e("; ".join([*m.get("warnings", []), *m.get("assumed", []), *_left_out(m),
                                       _reason(m)]).strip("; "))]
            for m in data["masters"]]),
        "<h2>Science frames</h2>" + table(["frame", "status", "calibrations", "seconds", "reason"], [
            [e(s.get("product") or Path(s["raw"]).name), status(s["status"]), cals(s),
             f"{s.get('seconds', 0):.2f}", e("; ".join([*s.get("assumed", []), _reason(s)]).strip("; "))]
            for s in data["science"]]),
    ]
    if data["calibrations_absent"]:
        sections.append("<h2>Calibrations not applied</h2>" + table(["type", "why", "frames"], [
            [e(a["type"]), e(a["reason"]), f"{a['n']}: " + e(", ".join(a["frames"]))]
            for a in data["calibrations_absent"]]))
    if data["unknown"]:
        sections.append("<h2>Files not used</h2>" + table(["file", "reason"], [
            [e(u["path"]), e(u["reason"])] for u in data["unknown"]]))
    others = [f for f in data["frames"] if f.get("note")]
    if others:
        sections.append("<h2>Frames left alone</h2>" + table(["file", "type", "why"], [
            [e(f["path"]), e(f["type"]), e(f["note"])] for f in others]))
    figures = [*data["history_plots"].values(), *looks.values()]
    if figures:
        sections.append("<h2>Quicklooks (ZScale)</h2>" + "".join(
            f'<figure><img src="{e(src)}" loading="lazy"></figure>' for src in figures))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
             ".failed{color:#b00;font-weight:bold}.built,.reduced{color:#070}.up-to-date{color:#555}"
             ".skipped{color:#a60}.suspect{color:#c60;font-weight:bold}"
             "figure{display:inline-block;margin:4px}img{max-width:380px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ccdflow night</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
