"""Sections in unbinned detector pixels mapped to a frame's raw pixels through its binning and
readout window (``geometry.coordinates: detector``). The rule is written once, in
ccdflow.framework.engine.readout_geometry's docstring; this module applies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from astropy.io import fits

from ccdflow.framework.engine.errors import SectionError
from ccdflow.framework.engine.readout_geometry import Geometry
from ccdflow.framework.headers.sections import SectionSyntaxError, parse_section

Range = tuple[int, int]  # 1-based, inclusive


@dataclass(frozen=True)
class AxisWindow:
    """One axis of a readout: detector pixels ``start..stop`` (full-frame grid) read at
    ``binning`` into raw pixels ``raw_start..raw_stop`` of a raw axis ``length`` long."""

    start: int
    stop: int
    raw_start: int
    raw_stop: int
    binning: int
    length: int
    image: Range | None

    def text(self) -> str:
        return f"{self.start}-{self.stop}"


@dataclass(frozen=True)
class Readout:
    """The window of one frame, and where that was read from (for messages)."""

    x: AxisWindow
    y: AxisWindow
    source: str

    def describe(self) -> str:
        return (f"readout window x {self.x.text()}, y {self.y.text()} (detector pixels, from "
                f"{self.source}), binning {self.x.binning}x{self.y.binning}, data in raw "
                f"[{self.x.raw_start}:{self.x.raw_stop},{self.y.raw_start}:{self.y.raw_stop}]")


def _ranges(text: str, source: str, path: str | None, shape: tuple[int, int] | None = None
            ) -> tuple[Range | None, Range | None]:
    """(x range, y range) of a section, None for '*'; checked against ``shape`` when given."""
    try:
        rows, cols = parse_section(text, shape)
    except SectionSyntaxError as exc:
        raise SectionError(str(exc), path=path, keyword=source, value=text,
                           expected="a section '[x1:x2,y1:y2]'" + (
                               f" inside the {shape[1]}x{shape[0]} (nx x ny) frame" if shape else "")
                           ) from None

    def one(s: slice) -> Range | None:
        return None if s.stop is None else (s.start + 1, s.stop)

    return one(cols), one(rows)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _header_value(header: fits.Header, keys: list[str]) -> tuple[str, str] | None:
    for key in keys:
        value = header.get(key)
        if value is not None and str(value).strip():
            return key, str(value)
    return None


def readout_window(geo: Geometry, header: fits.Header, shape: tuple[int, int],
                   binning: tuple[int, int], sections: list[str], path: str | None) -> Readout:
    """The frame's window, by the rule's order: detsec keyword, origin keywords, configured
    offset, else the whole image area (refused when the frame reads less or more than that).
    ``sections`` are the YAML sections; those beyond the image area tell how many overscan
    pixels follow the data when no datasec keyword says where the data end."""
    image = (None, None) if geo.image_area is None else _ranges(geo.image_area, "geometry.image_area", path)
    beyond: list[list[int]] = [[], []]
    for text in sections:
        for axis, rng in enumerate(_ranges(text, "geometry section", path)):
            area = image[axis]
            if rng is not None and area is not None and rng[0] > area[1]:
                beyond[axis].append(rng[1] - area[1])
    datasec = _header_value(header, geo.window.datasec_keywords)
    raw = (None, None) if datasec is None else _ranges(datasec[1], datasec[0], path, shape)
    detsec = _header_value(header, geo.window.detsec_keywords)
    det = (None, None) if detsec is None else _ranges(detsec[1], detsec[0], path)
    origin = [header.get(k) for k in geo.window.origin_keywords]
    use_origin = len(origin) == 2 and all(isinstance(v, int | float) for v in origin)
    if detsec is not None:
        source = f"{detsec[0]} {detsec[1]!r}"
    elif use_origin:
        source = f"{'/'.join(geo.window.origin_keywords)} {origin[0]}, {origin[1]}"
    elif geo.window.offset is not None:
        source = f"geometry.window.offset {list(geo.window.offset)}"
    else:
        source = "no window keyword or offset: the whole image area"
    axes = []
    for axis, (n, b) in enumerate(((shape[1], binning[0]), (shape[0], binning[1]))):
        area = image[axis]
        first = 1 if area is None else area[0]
        pre = _ceil_div(first - 1, b)
        post = _ceil_div(max(beyond[axis], default=0), b)
        data = raw[axis] or (pre + 1, n - post)
        n_data = data[1] - data[0] + 1
        what = "xy"[axis]
        if detsec is not None and det[axis] is not None:
            d0, d1 = det[axis]  # type: ignore[misc]
            if not n_data * b <= d1 - d0 + 1 < (n_data + 1) * b:  # 4096 read 3x3: 1365 pixels
                raise SectionError(
                    f"{detsec[0]} spans {d1 - d0 + 1} detector pixels along {what}, but the frame "
                    f"holds {n_data} data pixels there at binning {b} ({n_data * b} detector pixels)",
                    path=path, keyword=detsec[0], value=detsec[1],
                    expected=f"a {what} extent of {n_data * b} detector pixels, or a DATASEC")
            start = d0 + first - 1
        elif use_origin:
            unit = b if geo.window.origin_binned else 1
            start = (int(origin[axis]) - geo.window.origin_base) * unit + first
        elif geo.window.offset is not None:
            start = geo.window.offset[axis] + first - 1
        else:
            start = first
        stop = start + n_data * b - 1
        bare = detsec is None and not use_origin and geo.window.offset is None
        whole = area is not None and start == area[0] and stop > area[1] - b
        if area is not None and (start < area[0] or stop > area[1] or (bare and not whole)):
            keys = ", ".join([*geo.window.detsec_keywords, *geo.window.origin_keywords])
            raise SectionError(
                f"the frame reads detector pixels {start}-{stop} along {what} ({n_data} raw data "
                f"pixels at binning {b}, window from {source}), not inside the image area "
                f"{area[0]}-{area[1]}" + (": a windowed readout whose header does not say where "
                "the window lies" if bare else ""),
                path=path, keyword="geometry.image_area", value=geo.image_area,
                expected=f"a header window keyword ({keys}) or geometry.window.offset")
        axes.append(AxisWindow(start, stop, data[0], data[1], b, n, area))
    return Readout(axes[0], axes[1], source)


def _map_range(rng: Range | None, ax: AxisWindow, kind: Literal["overscan", "trim"]) -> Range | str:
    """Raw range of a detector range on one axis, or the reason it has none."""
    if rng is None:
        return (1, ax.length)
    lo, hi = rng
    b, start, stop = ax.binning, ax.start, ax.stop
    if kind == "trim":  # the useful pixels of this window: only whole binned pixels inside both
        lo, hi = max(lo, start), min(hi, stop)
        if lo > hi:
            return f"{rng[0]}-{rng[1]} does not overlap the readout window {ax.text()}"
        return (ax.raw_start + _ceil_div(lo - start, b), ax.raw_start + (hi - start + 1) // b - 1)
    if start <= lo and hi <= stop:
        return (ax.raw_start + (lo - start) // b, ax.raw_start + (hi - start) // b)
    if ax.image is not None and hi < ax.image[0]:  # prescan, clocked just before the data
        first = ax.image[0]
        return (ax.raw_start - (first - lo - 1) // b - 1, ax.raw_start - (first - hi - 1) // b - 1)
    if ax.image is not None and lo > ax.image[1]:  # overscan, clocked just after the data
        last = ax.image[1]
        return (ax.raw_stop + 1 + (lo - last - 1) // b, ax.raw_stop + 1 + (hi - last - 1) // b)
    where = ("" if ax.image is None else
             f" and is not wholly before or after the image area {ax.image[0]}-{ax.image[1]}")
    return f"{lo}-{hi} is not inside the readout window {ax.text()}{where}"


def to_raw(text: str, readout: Readout, kind: Literal["overscan", "trim"], source: str,
           path: str | None) -> str:
    """The raw section (FITS text) of a detector section, or a SectionError naming the
    section, the YAML key it came from and the window."""
    xy = _ranges(text, source, path)
    ranges: list[Range] = []
    for axis, (rng, ax) in enumerate(zip(xy, (readout.x, readout.y), strict=True)):
        result = _map_range(rng, ax, kind)
        problem = result if isinstance(result, str) else None
        if isinstance(result, tuple):
            if 1 <= result[0] <= result[1] <= ax.length:
                ranges.append(result)
            else:
                problem = f"maps to raw pixels {result[0]}-{result[1]}, outside the frame's 1-{ax.length}"
        if problem:
            raise SectionError(
                f"{kind} section {text} (detector pixels) along {'xy'[axis]}: {problem}; "
                f"{readout.describe()}", path=path, keyword=source, value=text,
                expected=f"a {kind} section the readout window holds")
    (x0, x1), (y0, y1) = ranges
    return f"[{x0}:{x1},{y0}:{y1}]"
