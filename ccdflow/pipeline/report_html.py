"""report.html from the report's data (see :mod:`ccdflow.pipeline.report`): problems first, then
the science frames with their QA figures (flagged cells highlighted), masters, quicklooks,
trends and the runs into this OUT. Every path in the data is relative to OUT; ``base`` is the
way from the page to OUT ('' for OUT/report.html, '../../' for a run's copy)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ccdflow.pipeline.quicklook import out_relative
from ccdflow.pipeline.report_frames import frame_name, reason, science_section

e = html.escape

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
         "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left;"
         "vertical-align:top}th{background:#f3f3f3}.failed{color:#b00;font-weight:bold}"
         ".built,.reduced{color:#070}.up-to-date{color:#555}.skipped{color:#a60}"
         ".suspect{color:#c60;font-weight:bold}td.flag{background:#ffd9a8;font-weight:bold}"
         ".problems{border:3px solid #b00;padding:0.5em 1em;background:#fff5f5}"
         ".clear{border:3px solid #070;padding:0.5em 1em;background:#f3fff3}"
         "figure{display:inline-block;margin:4px;vertical-align:top;max-width:370px}figure.wide{max-width:830px}figcaption{font-size:12px}"
         "img.thumb{max-width:360px}img.trend{max-width:820px;width:100%}nav a{margin-right:1em}"
         "code{background:#f4f4f4}")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Cells are HTML already; a cell given as (html, css class) gets the class."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="{c[1]}">{c[0]}</td>' if isinstance(c, tuple) else f"<td>{c}</td>" for c in row)
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def status(s: str) -> str:
    return f'<span class="{e(s)}">{e(s)}</span>'


class Page:
    """Links from one page of the report: to files under OUT (quoted), to their quicklooks."""

    def __init__(self, data: dict[str, Any], base: str) -> None:
        self.data, self.base = data, base
        self.out = Path(data["outdir"]).resolve()
        self.looks: dict[str, dict[str, Any]] = data.get("quicklook_images", {})

    def href(self, rel: str) -> str:
        return e(self.base + quote(rel))

    def fits_link(self, path: str | None, text: str) -> str:
        """``text`` linked to the FITS file (when it exists), else plain."""
        if not path or not Path(path).is_file():
            return e(text)
        return f'<a href="{self.href(out_relative(path, self.out))}">{e(text)}</a>'

    def look_link(self, path: str | None) -> str:
        look = self.looks.get(path or "")
        if not look:
            return ""
        anchor = "look-" + re.sub(r"[^A-Za-z0-9_-]", "_", look["fits"])
        return f' <a href="#{anchor}" title="quicklook">[look]</a>'

    def figure(self, path: str, caption: str) -> str:
        look = self.looks[path]
        anchor = "look-" + re.sub(r"[^A-Za-z0-9_-]", "_", look["fits"])
        return (f'<figure id="{anchor}"><a href="{self.href(look["full"])}"><img class="thumb" '
                f'src="{self.href(look["thumb"])}" alt="{e(caption)}"></a><figcaption>{e(caption)}: '
                f'<a href="{self.href(look["full"])}">full size</a> | '
                f'<a href="{self.href(look["fits"])}">FITS</a></figcaption></figure>')


def render(data: dict[str, Any], base: str) -> str:
    page = Page(data, base)
    parts = [_stopped(data), _header(data, page), _problems(data), _this_run(data),
             science_section(data, page), _masters(data, page), _others(data),
             _quicklooks(data, page), _trends(data, page), _runs(data, page)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ccdflow night {e(data['run']['id'])}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")


def _stopped(data: dict[str, Any]) -> str:
    if not data.get("stopped"):
        return ""
    return (f'<p class="failed">The run stopped before the end: {e(data["stopped"])}. What was done '
            "is listed below; run the same command again once this is fixed and it carries on.</p>")


def _header(data: dict[str, Any], page: Page) -> str:
    as_of = (f'<p class="suspect">Calibrations chosen with the caldb as of {e(str(data["caldb_as_of"]))} '
             "UTC (--caldb-as-of); masters built by this run were written, not registered.</p>"
             if data.get("caldb_as_of") else "")
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("problems", "Problems"), ("run", "This run"), ("science", "Science frames"),
        ("masters", "Masters"), ("quicklooks", "Quicklooks"), ("trends", "Trends"), ("runs", "Runs")))
    return (f"<h1>ccdflow night report</h1><nav>{nav}</nav><p>raw: <code>{e(data['rawdir'])}</code><br>"
            f"out: <code>{e(data['outdir'])}</code><br>caldb: <code>{e(data['caldb'])}</code><br>"
            f"run {e(data['run']['id'])} on {e(data['executor'])}; ccdflow {e(data['ccdflow_version'])}; "
            f"written {e(data['written'])}; this run's own copy: "
            f'<a href="{page.href(data["run"]["dir"] + "/report.html")}">{e(data["run"]["dir"])}</a>'
            f"</p>{as_of}")


def _problems(data: dict[str, Any]) -> str:
    items = data["problems"]
    if not items:
        return ('<div id="problems" class="clear"><h2>Problems</h2><p>Nothing needs attention: no '
                "failed frame or master, no suspect master, no frame flagged by QA, no missing or "
                "assumed calibration or value, every file used.</p></div>")
    kinds: dict[str, int] = {}
    for p in items:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    rows = [[e(p["kind"]), f'<a href="#{p["anchor"]}">{e(p["what"])}</a>' if p["anchor"] else e(p["what"]),
             e(p["why"]), f"<code>{e(p['action'])}</code>" if p["action"].startswith("ccdflow ")
             else e(p["action"])] for p in items]
    summary = ", ".join(f"{n} {k}{'s' * (n > 1 and k[-1] not in 'ds')}" for k, n in kinds.items())
    return (f'<div id="problems" class="problems"><h2>Problems: {e(summary)}</h2>'
            + table(["what", "file", "why", "what to do"], rows) + "</div>")


def _this_run(data: dict[str, Any]) -> str:
    counts = data["counts"]
    lines = "".join(f"<li>{e(line)}</li>" for line in data.get("redo_summary", []))
    summary = table(["what", "count"], [
        ["files", counts["files"]], ["unreadable or unknown", counts["unreadable_or_unknown"]],
        *[[f"{k} frames", v] for k, v in sorted(counts["frame_types"].items())],
        *[[f"masters {k}", v] for k, v in sorted(counts["masters"].items())],
        *[[f"science {k}", v] for k, v in sorted(counts["science"].items())]])
    seconds = table(["stage", "seconds"], [[e(k), f"{v:.1f}"] for k, v in data["seconds"].items()])
    return f'<h2 id="run">This run</h2><ul>{lines}</ul>{summary}{seconds}'


def _qa_cell(master: dict[str, Any]) -> str:
    """A suspect master's QA in orange with how to accept it (it is not chosen until then)."""
    from ccdflow.caldb.qa import qa_words

    if not master.get("qa"):
        return ""
    text = e(qa_words(master["qa"]))
    if master.get("quality") == "suspect":
        return (f'<span class="suspect">{text}; not used until accepted: ccdflow caldb mark-good '
                f'{master.get("caldb_id")}</span>')
    return text


def _masters(data: dict[str, Any], page: Page) -> str:
    if data["masters"]:
        rows = [[page.fits_link(m.get("path"), m["name"]) + page.look_link(m.get("path")),
                 status(m["status"]), m["n"], m.get("caldb_id", ""), m.get("median", ""),
                 m.get("noise", ""), _qa_cell(m),
                 e("; ".join([*m.get("warnings", []), *m.get("assumed", []),
                              *(f"left out {Path(p).name}: {w}" for p, w in m.get("excluded", [])),
                              reason(m)]).strip("; "))] for m in data["masters"]]
        return '<h2 id="masters">Masters</h2>' + table(
            ["master", "status", "frames", "caldb id", "median", "noise", "QA", "notes"], rows)
    why = ("this run was --redo-stale: it built no master and re-reduced only the stale frames"
           if data.get("redo_stale") else "this run built and found no master")
    previous = data.get("previous_masters_run")
    link = (f' The masters table of the last run that built them: <a href="{page.href(previous)}">'
            f"{e(previous)}</a>." if previous else "")
    used = data.get("masters_used") or []
    body = table(["master used by this run's frames", "type", "caldb id", "frames"], [
        [page.fits_link(m.get("path"), m["name"]) + page.look_link(m.get("path")), e(m["type"]), m["id"],
         m["frames"]] for m in used]) if used else "<p>No frame of this run used a master.</p>"
    return f'<h2 id="masters">Masters</h2><p>No master built or found: {e(why)}.{link}</p>{body}'


def _others(data: dict[str, Any]) -> str:
    parts = []
    if data["calibrations_absent"]:
        parts.append('<h2 id="absent">Calibrations not applied</h2>' + table(["type", "why", "frames"], [
            [e(a["type"]), e(a["reason"]), f"{a['n']}: " + e(", ".join(a["frames"]))]
            for a in data["calibrations_absent"]]))
    if data["unknown"]:
        parts.append('<h2 id="unused">Files not used</h2>' + table(["file", "reason"], [
            [e(u["path"]), e(u["reason"])] for u in data["unknown"]]))
    others = [f for f in data["frames"] if f.get("note")]
    if others:
        parts.append("<h2>Frames left alone</h2>" + table(["file", "type", "why"], [
            [e(f["path"]), e(f["type"]), e(f["note"])] for f in others]))
    return "".join(parts)


def _quicklooks(data: dict[str, Any], page: Page) -> str:
    names = {m.get("path"): m["name"] for m in [*data["masters"], *data.get("masters_used", [])]}
    for s in data["science"]:
        names[s["path"]] = frame_name(s)
        names[s["raw"]] = f"raw {Path(s['raw']).name} (failed)"
    figures = "".join(page.figure(path, names.get(path, Path(path).name)) for path in page.looks)
    empty = "" if figures else "<p>No quicklook: no master or frame with a readable file.</p>"
    return (f'<h2 id="quicklooks">Quicklooks (ZScale grey, DQ bits in colours)</h2><p>'
            f'{e(data.get("quicklook_rule", ""))}</p>{figures}{empty}')


def _trends(data: dict[str, Any], page: Page) -> str:
    plots = data["history_plots"]
    if not plots:
        why = ("the run stopped before the end" if data.get("stopped")
               else "no caldb given to the report, or no master in it has the statistic")
        return f'<h2 id="trends">Trends</h2><p>No trend plot: {e(why)}.</p>'
    return '<h2 id="trends">Trends (caldb history)</h2>' + "".join(
        f'<figure class="wide"><a href="{page.href(src)}"><img class="trend" src="{page.href(src)}" '
        f'alt="{e(title)}"></a><figcaption>{e(title)}</figcaption></figure>' for title, src in plots.items())


def _runs(data: dict[str, Any], page: Page) -> str:
    rows = [[f'<a href="{page.href(data["run"]["dir"] + "/report.html")}">{e(data["run"]["id"])}</a> '
             "(this run)", e(data["written"]), _counts(data["counts"]), "yes" if data["redo_stale"] else ""]]
    rows += [[f'<a href="{page.href(r["html"])}">{e(r["id"])}</a>', e(str(r.get("written") or "")),
              _counts(r.get("counts") or {}), "yes" if r.get("redo_stale") else ""] for r in data["runs"]
             if (Path(data["outdir"]) / r["html"]).is_file()]  # a run killed before its page
    return '<h2 id="runs">Runs into this OUT (newest first)</h2>' + table(
        ["run", "written", "did", "--redo-stale"], rows)


def _counts(counts: dict[str, Any]) -> str:
    words = [f"masters {k} {v}" for k, v in sorted((counts.get("masters") or {}).items())]
    words += [f"science {k} {v}" for k, v in sorted((counts.get("science") or {}).items())]
    return e(", ".join(words) or "nothing")
