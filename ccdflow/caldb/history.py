"""How a master statistic evolves over time: the series, and a PNG plot of it.

Every master carries a ``stats`` dict at ingest: ``level`` (bias: the raw bias level of its
inputs, overscan included; flat: the mean raw level of its inputs), ``median`` (of the master
itself: for a bias what is left after overscan subtraction), ``noise`` (clipped standard
deviation of the master, a read-noise proxy),
``dark_rate`` (darks, ADU/s), ``flat_median`` (median of the master flat: about 1 for ccdflow's
normalised flats), and whatever else a plugin or ingest stored there.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccdflow.caldb.database import CalDB
from ccdflow.caldb.errors import CaldbError
from ccdflow.framework.calibrations import find_type

#: Other names people use for the standard statistics.
ALIASES = {"bias_level": "level", "flat_level": "level", "read_noise": "noise", "rate": "dark_rate"}
UNITS = {"level": "ADU", "median": "ADU", "noise": "ADU", "dark_rate": "ADU/s",
         "flat_median": "normalised"}


def _type_attribute(kind: str, name: str, default: Any) -> Any:
    """An attribute of a registered calibration type, or ``default`` for a type no installed
    plugin knows (its records can still be listed and plotted)."""
    found = find_type(kind)
    return default if found is None else getattr(found, name)


def stat_name(kind: str, stat: str | None) -> str:
    """The stats key for a requested name (alias or None for the type's default)."""
    if not stat:
        return _type_attribute(kind, "trend_stat", "median")  # "the" statistic of the type
    return ALIASES.get(stat, stat)


def history(db: CalDB, kind: str, stat: str | None = None, since: datetime | None = None,
            until: datetime | None = None, instrument: str | None = None, *,
            include_bad: bool = False, filter: str | None = None) -> list[dict[str, Any]]:
    """One point per master of ``kind`` holding ``stat``, oldest first.

    Raises :class:`CaldbError` naming the statistics that do exist when none of the
    masters in range has ``stat``.
    """
    key = stat_name(kind, stat)
    records = db.list(kind=kind, instrument=instrument, filter=filter, since=since, until=until,
                      include_bad=include_bad)
    series = []
    for rec in records:
        value = (rec.get("stats") or {}).get(key)
        if value is None:
            continue
        series.append({
            "id": rec["id"], "type": rec["type"], "obs_time": rec["obs_time"], "stat": key,
            "value": float(value),
            "quality": rec["quality"], "quality_reason": rec["quality_reason"],
            "instrument": rec["instrument"], "camera": rec["camera"],
            "gain_setting": rec["gain_setting"], "offset": rec["offset"],
            "detector": rec["detector"], "filter": rec["filter"],
            "exposure_time": rec["exposure_time"], "temperature": rec["temperature"],
            "n_combined": rec["n_combined"], "path": rec["path"], "qa": rec.get("qa"),
        })
    if records and not series:
        present = sorted({k for rec in records for k in (rec.get("stats") or {})})
        raise CaldbError(
            f"no {kind} master in range has statistic {key!r}; "
            f"available: {', '.join(present) or 'none'}"
        )
    return series


def plot_history(series: list[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Write ``series`` as a PNG: date on x, value on y, bad masters as red crosses, suspect ones
    (master QA, not yet accepted) as orange diamonds."""
    if not series:
        raise CaldbError(f"nothing to plot for {title!r}: the series is empty")
    # The object-oriented API with the Agg canvas: no display, no pyplot global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    stat = series[0]["stat"]
    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in series:
        if p["quality"] not in ("bad", "suspect"):
            groups.setdefault(setup_label(p), []).append(p)
    # matplotlib's stubs type x as numbers only; its unit converters take datetimes (dates axis)
    for label, points in sorted(groups.items()):
        ax.plot([_time(p) for p in points], [p["value"] for p in points], "o-", markersize=5,  # type: ignore[arg-type]
                linewidth=1, label=f"{label or 'good'} ({len(points)})")
    bad = [p for p in series if p["quality"] == "bad"]
    if bad:
        ax.plot([_time(p) for p in bad], [p["value"] for p in bad], "x", color="tab:red",  # type: ignore[arg-type]
                markersize=9, markeredgewidth=2, label=f"marked bad ({len(bad)})")
    suspect = [p for p in series if p["quality"] == "suspect"]
    if suspect:
        ax.plot([_time(p) for p in suspect], [p["value"] for p in suspect], "D",  # type: ignore[arg-type]
                color="tab:orange", markersize=7, label=f"suspect, not accepted ({len(suspect)})")
    ax.set_xlim(*time_span([_time(p) for p in series]))  # type: ignore[arg-type]
    locator = AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.tick_params(labelsize=10)
    ax.set_xlabel("observation time (UTC)", fontsize=11)
    unit = UNITS.get(stat)
    ax.set_ylabel(f"{stat} ({unit})" if unit else stat, fontsize=11)
    ax.set_title(title, fontsize=12)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def time_span(times: list[datetime]) -> tuple[datetime, datetime]:
    """The x range of a history plot: the data padded by a tenth of its span each side, and by at
    least half a day (one night's single point gets a day around it, not matplotlib's default of
    years, which squeezes the point into an unreadable axis)."""
    first, last = min(times), max(times)
    pad = max((last - first) / 10, timedelta(hours=12))
    return first - pad, last + pad


def setup_label(point: dict[str, Any]) -> str:
    """Masters that are comparable share a line: same camera and CMOS settings (two cameras'
    bias levels on one line would look like a drift), same filter, and for darks the same set
    point."""
    parts = [str(point["camera"])] if point.get("camera") else []
    parts += [f"{word} {point[key]}" for key, word in (("gain_setting", "gain"), ("offset", "offset"))
              if point.get(key)]
    if point.get("filter"):
        parts.append(f"filter {point['filter']}")
    if (point.get("temperature") is not None
            and _type_attribute(str(point.get("type")), "temperature_tolerance", None) is not None):
        parts.append(f"{point['temperature']:.0f} C")
    return ", ".join(parts)


def _time(point: dict[str, Any]) -> datetime:
    value = point["obs_time"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
