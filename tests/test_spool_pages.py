"""The spool keeps its frames in the page cache, not in the process's resident set: pages
written or read once are released (MADV_DONTNEED), and what the combine reads back is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ccdflow.framework.io.spool import Spool, combine_frames
from ccdflow.framework.numerics.combine_sources import release_pages


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status")


def test_frames_survive_release_and_leave_the_resident_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frames = [rng.normal(100, 5, (512, 512)).astype(np.float32) for _ in range(8)]
    frames[2][10, 20] = np.nan
    with Spool(1, tmp_path) as warm:  # the copy kernel's first call maps numba's LLVM (~35 MiB)
        warm.put(0, frames[0], None)
    with Spool(len(frames), tmp_path) as spool:
        before = _rss_file_kib()
        for i, f in enumerate(frames):
            spool.put(i, f, None)
        # 8 x 1 MiB of data and 8 x 256 KiB of mask were written; almost none stays mapped
        assert _rss_file_kib() - before < 2 * 1024
        for i, f in enumerate(frames):
            good = np.isfinite(f)
            np.testing.assert_array_equal(spool.data[i][good], f[good])
            assert spool.mask[i][10, 20] == (i == 2)
        got = combine_frames(list(spool.data), list(spool.mask), method="mean", clip="none")
    stack = np.stack(frames).astype(np.float64)
    expected = np.nanmean(stack, axis=0)
    np.testing.assert_allclose(got.data, expected, rtol=1e-6)
    assert got.n_used[10, 20] == 7


def test_release_leaves_plain_arrays_alone() -> None:
    a = np.arange(12.0).reshape(3, 4)
    release_pages(a)  # not a map: nothing to do, no error
    release_pages(a[:, ::2])
    assert a.sum() == 66.0
