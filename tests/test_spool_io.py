"""The spool's file I/O beside its map: a frame given up (``put(..., consume=True)``) is cleaned in
place and pwritten, and the combine preads its bands (``pread_view``/``file_position``); what is
read back and combined is what the map path gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccdflow.framework.io.spool import Spool, combine_frames
from ccdflow.framework.numerics.combine_sources import file_position, pread_view, read_band

SHAPE = (96, 80)


def frames(n: int = 6, seed: int = 4) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    rng = np.random.default_rng(seed)
    data = [rng.normal(500, 20, SHAPE).astype(np.float32) for _ in range(max(n, 6))]
    data[1][4, 5], data[2][0, 0], data[2][-1, -1] = np.nan, np.inf, -np.inf
    data[3][7, 7] = -0.0
    masks: list[np.ndarray | None] = [None] * max(n, 6)
    masks[0] = np.zeros(SHAPE, bool)
    masks[0][10:12, 20:30] = True
    masks[4] = np.zeros(SHAPE, bool)  # a mask with nothing in it
    return data[:n], masks[:n]


def parked(data: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    bad = ~np.isfinite(data) | (False if mask is None else mask)
    return np.where(bad, np.float32(0), data).astype(np.float32), bad


@pytest.mark.parametrize("consume", [False, True])
def test_frames_read_back_exactly_and_are_masked_where_bad(tmp_path: Path, consume: bool) -> None:
    data, masks = frames()
    originals = [d.copy() for d in data]
    with Spool(len(data), tmp_path) as spool:
        pairs = enumerate(zip(data, masks, strict=True))
        counts = [spool.put(i, d, m, consume=consume) for i, (d, m) in pairs]
        assert counts == [0, 1, 2, 0, 0, 0]  # the non-finite pixels, not the masked ones
        for i, (d, m) in enumerate(zip(originals, masks, strict=True)):
            want, bad = parked(d, m)
            assert np.array_equal(np.array(spool.data[i]).view(np.uint32), want.view(np.uint32))
            assert np.array_equal(np.array(spool.mask[i]), bad)
            assert spool.masked[i] == bool(bad.any())
        assert [m is None for m in spool.masks_or_none(range(len(data)))] == [
            False, False, False, True, True, True]
    if not consume:  # the caller's frames are only read
        for d, o in zip(data, originals, strict=True):
            assert np.array_equal(d, o, equal_nan=True)


KINDS = (("median", "sigma"), ("mean", "sigma"), ("mean", "none"))


def test_consume_combines_exactly_as_the_map_path(tmp_path: Path) -> None:
    results = {}
    for consume in (False, True):
        data, masks = frames(seed=9)
        with Spool(len(data), tmp_path / str(consume)) as spool:
            for i, (d, m) in enumerate(zip(data, masks, strict=True)):
                spool.put(i, d, m, consume=consume)
            idx = range(len(data))
            for method, clip in KINDS:
                results[consume, method, clip] = combine_frames(
                    list(spool.data), spool.masks_or_none(idx), method=method, clip=clip,
                    memory_limit=100_000)  # bands of a few rows: preads at many offsets
    for method, clip in KINDS:
        a, b = results[False, method, clip], results[True, method, clip]
        assert np.array_equal(a.data, b.data, equal_nan=True)
        assert np.array_equal(a.error, b.error, equal_nan=True)
        assert np.array_equal(a.n_used, b.n_used)
    got = results[True, "mean", "none"]
    assert got.n_used[4, 5] == 5 and got.n_used[10, 25] == 5 and got.n_used[30, 30] == 6


@pytest.mark.parametrize("bad", ["strided", "float64", "read-only"])
def test_consume_of_a_frame_it_cannot_pwrite_copies_through_the_map(tmp_path: Path, bad: str) -> None:
    data, _ = frames(1)
    frame = data[0]
    frame[3, 3] = np.nan
    given = {"strided": np.repeat(frame, 2, axis=1)[:, ::2], "float64": frame.astype(np.float64),
             "read-only": frame.copy()}[bad]
    if bad == "read-only":
        given.flags.writeable = False
    before = given.copy()
    with Spool(1, tmp_path) as spool:
        assert spool.put(0, given, None, consume=True) == 1
        want, mask = parked(frame, None)
        assert np.array_equal(np.array(spool.data[0]), want) and np.array_equal(np.array(spool.mask[0]), mask)
    assert np.array_equal(given, before, equal_nan=True)


def test_a_consumed_frame_is_cleaned_in_place(tmp_path: Path) -> None:
    data, masks = frames(1)
    frame = data[0]
    with Spool(1, tmp_path) as spool:
        spool.put(0, frame, masks[0], consume=True)
        assert np.array_equal(frame, np.array(spool.data[0]))  # given up: it holds what was written


def memmap_with_header(tmp_path: Path, header_bytes: int, dtype=np.float32) -> tuple[np.memmap, np.ndarray]:
    values = np.arange(50 * 70, dtype=dtype).reshape(50, 70) * dtype(1.5)
    path = tmp_path / f"map{header_bytes}.bin"
    with open(path, "wb") as fh:
        fh.write(b"\xab" * header_bytes)
        fh.write(values.tobytes())
        fh.write(b"\xcd" * 123)
    return np.memmap(path, dtype, "r", offset=header_bytes, shape=values.shape), values


@pytest.mark.parametrize("header_bytes", [0, 100, 4096, 5000, 70001])
def test_pread_view_equals_the_maps_bytes_at_any_offset(tmp_path: Path, header_bytes: int) -> None:
    mm, values = memmap_with_header(tmp_path, header_bytes)
    for r0, r1 in [(0, 50), (0, 1), (3, 17), (17, 50), (49, 50)]:
        view = mm[r0:r1]
        where = file_position(view)
        assert where is not None and str(where[0]) == str(tmp_path / f"map{header_bytes}.bin")
        assert where[1] == header_bytes + r0 * 70 * 4
        out = np.full(view.shape, -1, np.float32)
        assert pread_view(view, out)
        assert np.array_equal(out, np.array(view)) and np.array_equal(out, values[r0:r1])
        band = np.empty(view.shape, np.float32)
        read_band(mm, r0, r1, band)
        assert np.array_equal(band, values[r0:r1])


def test_pread_view_declines_what_is_not_a_contiguous_map_view(tmp_path: Path) -> None:
    mm, values = memmap_with_header(tmp_path, 100)
    out = np.zeros((10, 70), np.float32)
    assert not pread_view(values[:10], out) and not out.any()  # a plain ndarray
    assert file_position(values) is None
    assert file_position(mm[:, ::2]) is None
    assert not pread_view(mm[:10, ::2], np.zeros((10, 35), np.float32))
    assert not pread_view(mm[:10], np.zeros((10, 70), np.float64))  # another dtype
    assert not pread_view(mm[:10], np.zeros((10, 70), np.float32)[:, ::1].T.copy().T)  # F-order out
    assert not pread_view(mm[:10], np.zeros((9, 70), np.float32))  # another size
    band = np.empty((10, 35), np.float32)
    read_band(mm[:, ::2], 0, 10, band)  # the map path still reads them
    assert np.array_equal(band, values[:10, ::2])
    m64, v64 = memmap_with_header(tmp_path, 8, np.float64)
    out64 = np.empty((5, 70), np.float64)
    assert pread_view(m64[5:10], out64) and np.array_equal(out64, v64[5:10])


def test_a_read_only_map_is_read_and_released_and_can_close(tmp_path: Path) -> None:
    """np.load(..., mmap_mode="r") frames: the combine preads them (ctypes cannot take the
    address of a read-only map, which once made this a TypeError) and leaves no export behind."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], np.full((40, 30), float(i), np.float32))
    maps = [np.load(p, mmap_mode="r") for p in paths]
    got = combine_frames(maps, [None] * 3, method="mean", clip="none")
    assert np.array_equal(got.data, np.ones((40, 30)))
    where = file_position(maps[0][5:9])
    assert where is not None and where[1] == maps[0].offset + 5 * 30 * 4
    for m in maps:
        m._mmap.close()  # BufferError if an export were left alive


def test_a_copy_on_write_map_is_read_as_it_is_in_memory(tmp_path: Path) -> None:
    mm, values = memmap_with_header(tmp_path, 100)
    cow = np.memmap(mm.filename, np.float32, "c", offset=100, shape=values.shape)
    cow[2:4] = -7.0  # private pages: the file keeps its bytes
    assert file_position(cow[2:4]) is None
    band = np.empty((4, 70), np.float32)
    read_band(cow, 0, 4, band)
    assert np.all(band[2:4] == -7.0) and np.array_equal(band[:2], values[:2])


def test_a_full_disk_while_a_frame_is_written_is_a_named_error(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the spool's space could not be reserved (no fallocate), a disk that fills while a
    consumed frame is written gives DiskFullError naming the folder, not a bare OSError."""
    import errno

    import ccdflow.framework.io.spool as spool_module
    from ccdflow.framework.engine.errors import DiskFullError

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with Spool(2, tmp_path) as spool:
        monkeypatch.setattr(spool_module.os, "pwrite", full)
        with pytest.raises(DiskFullError, match=f"no space left in {tmp_path}"):
            spool.put(0, np.ones((16, 16), np.float32), None, "f0.fits", consume=True)
