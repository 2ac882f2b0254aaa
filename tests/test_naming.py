"""File names made from header values: bounded, printable, unique, and always inside OUT."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccdflow.pipeline.naming import (
    MAX_COMPONENT,
    OutputPathError,
    inside,
    product_relpath,
    safe_component,
)

ALLOWED = set(string.ascii_letters + string.digits + "._+=-~")


@given(st.text(max_size=400))
@settings(max_examples=400, deadline=None)
def test_any_value_becomes_one_safe_bounded_component(value):
    name = safe_component(value)
    assert set(name) <= ALLOWED
    assert 0 < len(name) <= MAX_COMPONENT
    assert "/" not in name and ".." not in name and not name.startswith(".")
    assert name not in ("", ".", "..")


@given(st.text(max_size=200), st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_different_values_get_different_names(a, b):
    if a != b:
        assert safe_component(a) != safe_component(b)


@pytest.mark.parametrize("value, expected", [
    ("R", "R"), ("-20C", "-20C"), ("fastL", "fastL"), ("n1_sci_R_001", "n1_sci_R_001"),
])
def test_ordinary_values_are_kept_as_they_are(value, expected):
    assert safe_component(value) == expected


@pytest.mark.parametrize("value", ["x/../../../escaped", "..", "../..", "/etc/passwd", "a\x00b",
                                   "C:\\windows", "é", " ", "a" * 300, ".hidden"])
def test_hostile_values_stay_one_component(value, tmp_path):
    name = safe_component(value)
    assert inside(tmp_path, tmp_path / name).parent == tmp_path.resolve()


def test_inside_refuses_escapes_through_dotdot_absolute_paths_and_links(tmp_path):
    out = tmp_path / "out"
    (out / "masters").mkdir(parents=True)
    assert inside(out, out / "masters" / "a.fits") == (out / "masters" / "a.fits").resolve()
    for bad in (out / "../x.fits", out / "masters/../../x.fits", "/tmp/x.fits", out):
        with pytest.raises(OutputPathError, match="outside the output folder"):
            inside(out, bad)
    os.symlink(tmp_path, out / "reduced")  # a link inside OUT that leads out of it
    with pytest.raises(OutputPathError):
        inside(out, out / "reduced" / "a.fits")


def test_products_keep_their_place_under_rawdir_and_become_fits(tmp_path):
    raw = tmp_path / "raw"
    (raw / "n1").mkdir(parents=True)
    (raw / "n2").mkdir()
    for rel in ("n1/a.fits", "n2/a.fits", "n2/b.fit.gz", "n2/c.fits", "n2/c.fits.gz", "n2/d.fts"):
        (raw / rel).write_bytes(b"")
    assert product_relpath(raw / "n1/a.fits", raw) == "n1/a.fits"
    assert product_relpath(raw / "n2/a.fits", raw) == "n2/a.fits"
    assert product_relpath(raw / "n2/b.fit.gz", raw) == "n2/b.fits"
    assert product_relpath(raw / "n2/d.fts", raw) == "n2/d.fits"
    # c.fits keeps its name; c.fits.gz beside it gets a hash instead of colliding
    assert product_relpath(raw / "n2/c.fits", raw) == "n2/c.fits"
    other = product_relpath(raw / "n2/c.fits.gz", raw)
    assert other.startswith("n2/c.") and other.endswith(".fits") and other != "n2/c.fits"
    assert product_relpath(tmp_path / "elsewhere.fits", raw) == "elsewhere.fits"
    hostile = product_relpath(raw / "n1" / "..x\x01y.fits", raw)
    assert hostile.startswith("n1/") and "\x01" not in hostile
