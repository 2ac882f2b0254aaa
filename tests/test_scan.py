"""Discovery: which files a scan finds, and what it reports instead of skipping silently
(dangling links, link loops, FIFOs, links to folders, folders that cannot be read); fpack'ed
files found and read from their compressed extension."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest
from astropy.io import fits

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.scan import discover_fits_files, iter_fits_files, scan_file, scan_paths
from ccdflow.framework.io.fitsio import read_ccd
from tests.test_header_map import header


@pytest.fixture(scope="module")
def builtin() -> PluginManager:
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments")
    return manager


def frame(path, **cards) -> str:
    fits.PrimaryHDU(np.arange(40 * 60, dtype=np.int16).reshape(40, 60), header(**cards)).writeto(path)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    """good.fits, sub/deep.fit, notes.txt, and one of each thing that cannot be read."""
    frame(tmp_path / "good.fits")
    (tmp_path / "sub").mkdir()
    frame(tmp_path / "sub" / "deep.fit")
    (tmp_path / "notes.txt").write_text("not FITS by name")
    os.symlink("good.fits", tmp_path / "alias.fits")
    os.symlink("nowhere.fits", tmp_path / "dangling.fits")
    os.symlink("loop.fits", tmp_path / "loop.fits")
    os.symlink("sub", tmp_path / "sublink")
    os.symlink("nowhere.txt", tmp_path / "dangling.txt")  # not named like FITS: not reported
    os.mkfifo(tmp_path / "pipe.fits")
    return tmp_path


def test_discovery_finds_files_and_says_why_it_left_the_rest(tree):
    files, problems = discover_fits_files([tree])
    assert files == [str(tree / n) for n in ("alias.fits", "good.fits", "sub/deep.fit")]
    reasons = {os.path.basename(p): r for p, r in problems}
    assert set(reasons) == {"dangling.fits", "loop.fits", "sublink", "pipe.fits"}
    assert "dangling symbolic link (to 'nowhere.fits'" in reasons["dangling.fits"]
    assert "symbolic link loop" in reasons["loop.fits"]
    assert "symbolic link to a folder ('sub'), not followed" in reasons["sublink"]
    assert "a FIFO, not a regular file" in reasons["pipe.fits"]
    assert all(r.startswith(p + ": ") for p, r in problems)


def test_a_folder_that_cannot_be_listed_is_reported(tree, monkeypatch):
    real = os.scandir

    def scandir(path="."):
        if str(path) == str(tree / "sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    files, problems = discover_fits_files([tree])
    assert str(tree / "sub" / "deep.fit") not in files
    assert (str(tree / "sub"), f"{tree / 'sub'}: folder cannot be read (Permission denied); its files "
                               "were not scanned") in problems


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder of mode 000; see the test above")
def test_a_folder_of_mode_000_is_reported(tree):
    (tree / "sub").chmod(0)
    try:
        _, problems = discover_fits_files([tree])
    finally:
        (tree / "sub").chmod(0o755)
    assert any(p == str(tree / "sub") and "folder cannot be read" in r for p, r in problems)


def test_explicit_paths_are_reported_too_and_a_given_folder_link_is_followed(tree):
    os.symlink(tree / "sub", tree.parent / f"{tree.name}-link")
    files, problems = discover_fits_files([tree / "gone.fits", tree / "pipe.fits", tree / "good.fits",
                                           tree.parent / f"{tree.name}-link"])
    assert files == [str(tree / "good.fits"), str(tree.parent / f"{tree.name}-link" / "deep.fit")]
    assert [(os.path.basename(p), r.split(": ", 1)[1][:14]) for p, r in problems] == [
        ("gone.fits", "file not found"), ("pipe.fits", "a FIFO, not a ")]


def test_iter_fits_files_keeps_its_contract(tree):
    """Files given are yielded as given (callers report them); folders give their readable files."""
    assert list(iter_fits_files([tree / "gone.fits", tree])) == [
        str(tree / "gone.fits"), *discover_fits_files([tree])[0]]


def test_scan_paths_lists_discovery_problems_among_unknown_and_never_blocks_on_a_fifo(tree, builtin):
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(result=scan_paths([tree], builtin)), daemon=True)
    worker.start()
    worker.join(30)
    assert "result" in done, "the scan blocked (a FIFO opened?)"
    frames, unknown = done["result"]
    assert sorted(os.path.basename(str(f.path)) for f in frames) == ["alias.fits", "deep.fit", "good.fits"]
    assert {os.path.basename(p) for p, _ in unknown} == {"dangling.fits", "loop.fits", "sublink", "pipe.fits"}
    with pytest.raises(UnprocessableInputError, match=r"pipe.fits: a FIFO, not a regular file"):
        scan_file(tree / "pipe.fits", builtin)
    assert stat.S_ISFIFO(os.lstat(tree / "pipe.fits").st_mode)


@pytest.mark.parametrize("instrument", ["generic", "feder-apogee"])
def test_fpacked_frame_is_found_and_read_from_its_compressed_extension(tmp_path, builtin, instrument):
    """A .fits.fz keeps the image in HDU 1; an instrument whose data_hdu is 0 reads it there."""
    cards = header(INSTRUME="Apogee USB/Net", TELESCOP="FEDER")
    data = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, cards)]).writeto(tmp_path / "f.fits.fz")
    (path,) = discover_fits_files([tmp_path])[0]
    meta = scan_file(path, builtin, instrument=instrument)
    assert (meta.shape, meta.frame_type) == ((40, 60), "science")
    assert meta.data_hdu == (1 if instrument == "feder-apogee" else None)
    hdu = meta.pixel_hdu(builtin.instrument(instrument).data_hdu)
    assert np.array_equal(read_ccd(path, hdu=hdu).data, data)


def test_a_cube_says_how_many_planes_it_has(tmp_path, builtin):
    cards = header(NAXIS=3, NAXIS3=50)
    fits.PrimaryHDU(np.zeros((50, 40, 60), np.int16), cards).writeto(tmp_path / "cube.fits")
    with pytest.raises(UnprocessableInputError, match=r"no HDU holds a 2-D image.*NAXIS3=50"):
        scan_file(tmp_path / "cube.fits", builtin)
    with pytest.raises(UnprocessableInputError, match=r"HDU 0 holds no 2-D image"):
        scan_file(tmp_path / "cube.fits", builtin, instrument="feder-apogee")


def test_an_unknown_files_reason_quotes_bad_and_long_cards_on_one_short_line(tmp_path):
    """A decimal-comma INSTRUME is quoted as text, not raised; a paragraph of COMMENT (which the
    kstars-ekos instrument identifies by) is cut to one line."""
    path = tmp_path / "u.fits"
    header = fits.Header()
    header["COMMENT"] = "FITS (Flexible Image Transport System) format is defined in 'Astronomy " * 3
    fits.PrimaryHDU(np.zeros((4, 4), np.int16), header).writeto(path)
    blob = bytearray(path.read_bytes())
    at = blob.find(b"END" + b" " * 77)
    blob[at:at + 160] = b"INSTRUME= 1,5 / decimal comma".ljust(80) + b"END".ljust(80)
    path.write_bytes(bytes(blob))
    (_, reason), = scan_paths([path]).unknown
    assert "no instrument recognises this header (INSTRUME='1,5';" in reason
    comment = reason.split("COMMENT=")[1].split(";")[0]
    assert len(comment) <= 62 and comment.endswith("...'") and "\n" not in reason


@pytest.mark.parametrize(("cards", "reason"), [
    ({"CF_VERS": "0.1.0", "CF_MTYPE": "bias"}, "a ccdflow master bias (CF_MTYPE), not a raw frame"),
    ({"CF_VERS": "0.1.0", "CF_RAW": "n1_sci_V_001.fits"},
     "a ccdflow product reduced from n1_sci_V_001.fits (CF_RAW), not a raw frame"),
    ({"CF_VERS": "0.1.0", "CF_PTYPE": "stack"}, "a ccdflow stack (CF_VERS 0.1.0), not a raw frame"),
], ids=["master", "product", "stack"])
def test_what_ccdflow_wrote_is_never_scanned_as_raw(builtin, tmp_path, cards, reason):
    """A master keeps its inputs' IMAGETYP and a product its raw frame's: in the raw folder
    (or an OUT inside it) either would pass for one more raw frame of that type."""
    raw = frame(tmp_path / "raw.fits")
    written = frame(tmp_path / "written.fits", **cards)
    found = scan_paths([tmp_path], builtin)
    assert [m.path for m in found.frames] == [raw]
    assert [path for path, _ in found.unknown] == [written]
    assert found.unknown[0][1].startswith(f"{written}: {reason}")  # the reason names the file
    with pytest.raises(UnprocessableInputError, match="not a raw frame"):
        scan_file(written, builtin)
    assert scan_file(raw, builtin).path == raw


def test_a_master_beside_its_biases_is_left_out_of_the_next_one(tmp_path):
    """End to end: `ccdflow master bias` run twice on one folder, the first master written
    into it, combines the same biases the second time (the master said left out, not used)."""
    from click.testing import CliRunner

    from ccdflow.cli import cli

    rng = np.random.default_rng(5)
    for i in range(3):
        hdr = fits.Header({"IMAGETYP": "Bias Frame", "EXPTIME": 0.0, "FILTER": "V", "CCD-TEMP": -10.0,
                           "DATE-OBS": f"2026-01-01T01:0{i}:00", "GAIN": 1.5, "RDNOISE": 3.5})
        fits.PrimaryHDU(np.round(rng.normal(1000, 2, (32, 32))).astype(np.uint16), hdr).writeto(
            tmp_path / f"bias_{i}.fits")
    runs = [CliRunner().invoke(cli, ["master", "bias", str(tmp_path), "--instrument", "generic", "--json",
                                     "--out", str(tmp_path / name)]) for name in ("mb1.fits", "mb2.fits")]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    with fits.open(tmp_path / "mb1.fits") as one, fits.open(tmp_path / "mb2.fits") as two:
        assert np.array_equal(one[0].data if one[0].data is not None else one[1].data,
                              two[0].data if two[0].data is not None else two[1].data)
    assert "mb1.fits: a ccdflow master bias (CF_MTYPE), not a raw frame" in runs[1].output
