"""How `ccdflow caldb` shows records and selection receipts: Rich tables and the JSON shape."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccdflow.caldb.qa import qa_words
from ccdflow.caldb.selection import Candidate, Receipt, describe_frame, scales_with_exposure
from ccdflow.framework.engine.dark_law import TemperatureLaw
from ccdflow.framework.engine.frame import FrameMeta

#: Keys of each candidate in `caldb best --json` (a stable, documented shape).
CANDIDATE_KEYS = ("id", "path", "accepted", "reasons", "cost", "terms")


def _when(value: str | None) -> str:
    return "-" if not value else value[:16].replace("T", " ")


def _num(value: Any, fmt: str = "{:g}") -> str:
    if value is None:
        return "-"
    if not isinstance(value, int | float):
        return str(value)
    text = fmt.format(value)
    return "+" + text[1:] if re.fullmatch(r"-0(\.0*)?", text) else text  # no "-0.00"


#: Columns whose values may be long: they fold onto more lines; the others never wrap.
LONG = {"qa", "file", "path", "reasons", "reason", "detail", "details", "value", "raw frame", "input frame",
        "sha256"}


def table(*columns: str, **options: Any) -> Table:
    """A table whose long text columns fold, so numbers and ids stay on one line."""
    tab = Table(box=box.SIMPLE_HEAD, pad_edge=False, **options)
    for name in columns:
        if name in LONG:
            tab.add_column(name, overflow="fold", ratio=1, min_width=10)
        else:
            tab.add_column(name, no_wrap=True)
    return tab


#: Setup columns of `caldb list`: shown as columns, or in the caption when every record agrees.
_SETUP = ("instrument", "camera", "detector", "binning", "gain_setting", "offset")


def records_table(records: list[dict[str, Any]]) -> Table:
    """One row per record; the setup (instrument, camera, detector, binning, gain setting,
    offset) goes to the caption when all agree (left out when none says: a CCD has no gain
    setting), and an unknown camera or setting among others (NULL: a record from before schema
    0004, or frames that did not say) shows as '-'."""
    shared = {key: records[0][key] for key in _SETUP
              if records and len({r[key] for r in records}) == 1}
    names = [k for k in _SETUP if k not in shared]
    caption = ", ".join(f"{k} {v}" for k, v in shared.items() if v is not None) or None
    tab = table("id", "type", *names, "filter", "exp (s)", "temp (C)", "observed (UTC)", "n",
                "quality", "file", caption=escape(caption or ""), caption_justify="left")
    for r in records:
        quality = shown_quality(r["quality"])
        if r["valid_from"] or r["valid_to"]:
            quality += " (certified)"
        tab.add_row(str(r["id"]), escape(r["type"]), *(escape(r[k] or "-") for k in names),
                    escape(r["filter"] or "-"), _num(r["exposure_time"]),
                    _num(r["temperature"], "{:.1f}"), _when(r["obs_time"]),
                    _num(r["n_combined"]), quality, escape(Path(r["path"]).name))
    return tab


def shown_quality(quality: str) -> str:
    """bad in red, suspect in yellow (Rich markup)."""
    colour = {"bad": "red", "suspect": "yellow"}.get(quality)
    return f"[{colour}]{quality}[/{colour}]" if colour else quality


def print_record(out: Console, record: dict[str, Any]) -> None:
    """`caldb show`: fields, statistics, master QA, inputs and events."""
    skip = {"stats", "inputs", "events", "qa"}
    tab = table("field", "value", title=f"calibration {record['id']}", title_justify="left")
    for key, value in record.items():
        if key not in skip:
            tab.add_row(key, escape("-" if value is None else str(value)))
    for key, value in (record.get("stats") or {}).items():
        tab.add_row(f"stats.{key}", escape(f"{value:.6g}" if isinstance(value, float) else str(value)))
    qa = record.get("qa")
    tab.add_row("qa", escape(qa_words(qa)))
    for key, value in ((qa or {}).get("figures") or {}).items():
        tab.add_row(f"qa.{key}", escape(f"{value:.6g}" if isinstance(value, float) else str(value)))
    out.print(tab)
    if record.get("inputs"):
        inputs = table("input frame", "sha256", title="inputs", title_justify="left")
        for i in record["inputs"]:
            inputs.add_row(escape(i["name"]), escape(i["sha256"] or "-"))
        out.print(inputs)
    events = table("at (UTC)", "action", "who", "reason", "details", title="events",
                   title_justify="left")
    for e in record.get("events", []):
        details = event_details(e["details"] or {})
        events.add_row(e["at"][:19].replace("T", " "), e["action"], escape(e["who"] or "-"),
                       escape(e["reason"] or "-"), escape(details or "-"))
    out.print(events)


def event_details(details: dict[str, Any]) -> str:
    """An event's details in a line: what it changed (``quality good -> bad``), the QA verdict of
    an ingest, and any other key; the full before/after states are in ``show --json``."""
    before, after = details.get("before") or {}, details.get("after") or {}
    def was(key: str) -> str:
        return "-" if before.get(key) is None else str(before[key])

    words = [f"{k} {v}" if not before else f"{k} {was(k)} -> {v}" for k, v in after.items()
             if v is not None and (not before or before.get(k) != v) and k != "quality_reason"]
    words += [f"{k} {before[k]} -> -" for k in before if before[k] is not None and after.get(k) is None
              and k != "quality_reason"]
    if details.get("qa"):
        words.append(f"qa {details['qa'].get('verdict')}")
    words += [f"{k}={v}" for k, v in details.items() if k not in ("before", "after", "qa")]
    return ", ".join(words)


def _sorted(candidates: list[Candidate]) -> list[Candidate]:
    """Accepted first, cheapest first; rejected after, by id."""
    return sorted(candidates, key=lambda c: (not c.accepted, math.inf if c.cost is None else c.cost,
                                             c.id))


def best_json(record: dict[str, Any] | None, receipt: Receipt | None, meta: FrameMeta,
              error: str | None) -> dict[str, Any]:
    """The documented shape of `caldb best --json`."""
    return {
        "selected": record,
        "candidates": [{k: getattr(c, k) for k in CANDIDATE_KEYS}
                       for c in _sorted(receipt.candidates if receipt else [])],
        "frame": meta.model_dump(mode="json"),
        "policy": None if receipt is None else receipt.policy,
        "scaling": None if receipt is None else receipt.scaling,
        "waiver": None if receipt is None else receipt.waiver,
        "skipped": [] if receipt is None else receipt.skipped,
        "error": error,
    }


def _policy_line(kind: str, policy: dict[str, Any]) -> str:
    parts = [f"within {policy['max_age_days']:g} d", "same " + ", ".join(policy["must_match"])]
    if policy.get("temperature_tolerance") is not None:
        parts.append(f"temperature +-{policy['temperature_tolerance']:g} C")
    if scales_with_exposure(kind):
        parts.append(policy["exposure_policy"])
    if policy.get("temperature_law"):
        parts.append("temperature law " + TemperatureLaw.model_validate(policy["temperature_law"]).describe())
    return "; ".join(parts)


def _exposure(c: Candidate) -> str:
    if c.exact_exposure:
        return "exact"
    if c.scale is not None:
        return f"scaled x{c.scale:.4g}"
    return "-"


def cost_line(terms: dict[str, Any]) -> str:
    """'time 0.0333 + temperature 0.01 + noise 0.16 (x2 exposure, x1.02 temperature, N 5; ...)'."""
    parts = [f"{name} {terms[name]:.4g}" for name in ("time", "temperature", "noise") if name in terms]
    line = " + ".join(parts)
    if "noise" in terms:
        line += (f" (x{terms['exposure_scale']:.4g} exposure, x{terms['temperature_factor']:.4g} "
                 f"temperature, N {terms['n_combined']}; {terms['noise_model']})")
    return line


def print_receipt(out: Console, kind: str, meta: FrameMeta, record: dict[str, Any] | None,
                  receipt: Receipt, error: str | None) -> None:
    """`caldb best` without --json: the frame, the policy, every candidate, one verdict."""
    out.print(f"[bold]{escape(describe_frame(kind, meta))}[/bold]  frame "
              f"{escape(Path(meta.path or '-').name)} ({meta.frame_type}, "
              f"{meta.date_obs:%Y-%m-%d %H:%M} UTC, {meta.exposure_time:g} s"
              + (f", {escape(meta.filter)}" if meta.filter else "")
              + (f", {meta.temperature:.1f} C" if meta.temperature is not None else "") + ")")
    out.print(f"policy: {escape(_policy_line(kind, receipt.policy))}")
    tab = table("", "id", "cost", "dt (d)", "dT (C)", "exposure", "reasons", "file")
    for c in _sorted(receipt.candidates):
        selected = record is not None and c.id == record["id"]
        mark = "[green]>>[/green]" if selected else ("ok" if c.accepted else "[red]x[/red]")
        reasons = "; ".join(c.reasons) or ("selected" if selected else "passes all gates")
        tab.add_row(mark, str(c.id), _num(c.cost, "{:.4g}"), _num(c.dt_days, "{:+.2f}"),
                    _num(c.dtemp, "{:+.2f}"), _exposure(c) if scales_with_exposure(kind) else "-",
                    escape(reasons), escape(Path(c.path).name))
    out.print(tab)
    if receipt.note and receipt.note != "pinned by override":  # the verdict says "pinned"
        out.print(f"note: {escape(receipt.note)}")
    for line in receipt.skipped:
        out.print(f"[yellow]skipped:[/yellow] {escape(line)}")
    if record is None:  # the caller passes a record or the error that left none
        out.print(f"[red]no {escape(kind)}:[/red] {escape(str(error))}")
        return
    chosen = next(c for c in receipt.candidates if c.id == record["id"])
    verdict = f"[green]selected[/green] {escape(kind)} {record['id']} ({escape(record['path'])})"
    if receipt.note == "pinned by override":
        verdict += ", pinned"
    if chosen.cost is not None:
        verdict += f", cost {chosen.cost:.4g}"
    if receipt.scaling is not None:
        verdict += (f", scaled x{receipt.scaling:.4g} ({record['exposure_time']:g} s -> "
                    f"{meta.exposure_time:g} s)")
    if chosen.temperature_factor is not None and chosen.temperature_factor != 1.0:
        verdict += f", x{chosen.temperature_factor:.4g} for temperature"
    out.print(verdict)
    if chosen.terms:
        out.print(f"cost terms: {escape(cost_line(chosen.terms))}")
    if receipt.waiver:
        out.print(f"[yellow]waiver:[/yellow] {escape(receipt.waiver)}")
