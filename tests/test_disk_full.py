"""A full disk (a small tmpfs) is a named error with the folder, the bytes needed and free, exit
3 for a night, and never a half-written file or a Bus error from a memory-mapped spool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(64, 64), overscan=8, n_science=1)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("disk"), SPEC).raw_dir



@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB tmpfs; skipped where this process may not mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".ccdflow-spool-")]


def test_full_disk_spool_is_a_named_error_not_a_bus_error(small_disk):
    from ccdflow.framework.engine.errors import DiskFullError
    from ccdflow.framework.io.spool import Spool

    frame = np.ones((128, 128), np.float32)  # 3 of them need 196,608 bytes: more than the disk
    with pytest.raises(DiskFullError, match=r"no space left in .*small.*196,608 bytes needed"), \
            Spool(3, small_disk) as spool:
        spool.put(0, frame, None)
    assert not leftovers(small_disk)


def test_full_disk_atomic_writers_remove_their_partial_files(small_disk):
    from ccdflow.framework.engine.errors import DiskFullError
    from ccdflow.framework.io.fitswrite import atomic_write
    from ccdflow.pipeline.outputs import write_text_atomic

    big = fits.HDUList([fits.PrimaryHDU(np.ones((200, 200), np.float32))])
    with pytest.raises(DiskFullError, match=r"writing big\.fits \(164,160 bytes needed"):
        atomic_write(big, small_disk / "big.fits")
    with pytest.raises(DiskFullError, match=r"writing report\.json \(more than [\d,]+ bytes needed"):
        write_text_atomic(small_disk / "report.json", "{}" * 100_000)
    assert not list(small_disk.iterdir())


def test_night_on_a_full_disk_exits_3_with_nothing_half_written(raw, small_disk, tmp_path):
    out = small_disk / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                           "--workers", "1", "--caldb", str(tmp_path / "caldb.sqlite")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "Bus error" not in proc.stderr
    assert "no space left in" in proc.stderr.strip().splitlines()[-1]
    assert not leftovers(out)
    log = (out / "ccdflow.log").read_text().splitlines()  # the stop, in the log it closed
    assert "ERROR   ccdflow.cli: error: the run stopped: DiskFullError: no space left in" in log[-2]
    assert "=== exit status 3 after" in log[-1]


