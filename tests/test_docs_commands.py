"""The command blocks of README.md, docs/night.md and docs/caldb.md run as a user would run
them, in order, in one folder (issue 15 item 6): every command ends with the status its page
says and prints what the page shows (stdout and stderr together; see tests/doc_blocks.py), so
the pages cannot drift from the tool. Blocks that cannot run here (pip install, a PostgreSQL
server, a Dask cluster, a folder watched until stopped) say why in the page's source."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.doc_blocks import blocks, run_page, untagged_commands

pytestmark = pytest.mark.slow  # a simulated night and a two-night demo, then ~45 commands

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "docs" / "night.md", ROOT / "docs" / "caldb.md"]
#: Blocks a page may leave unrun (each with its reason): few, so the pages stay tested.
MOST_NOT_RUN = {"README.md": 2, "night.md": 3, "caldb.md": 2}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    work = tmp_path_factory.mktemp("docs")
    # the user's caldb, instrument folder and XDG folders are not the pages': a fresh home
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CCDFLOW_") and k not in ("XDG_CONFIG_HOME", "XDG_DATA_HOME")}
    # wide enough that no table wraps a cell: a wrapped path would depend on the folder's name
    env.update(HOME=str(home), COLUMNS="200", TZ="UTC")
    out = {}
    for page in PAGES:
        start = time.perf_counter()
        out[page.name] = (run_page(page, work, env), time.perf_counter() - start)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_block_of_the_page_is_run_or_says_why_not(page):
    assert untagged_commands(page) == [], f"{page.name}: commands outside a console block"
    not_run = [b for b in blocks(page) if b.kind == "not run"]
    assert all(b.reason for b in not_run)
    assert len(not_run) <= MOST_NOT_RUN[page.name], [b.reason for b in not_run]


def test_the_pages_run_as_they_say(ran):
    commands = {name: [c.line for c, _ in result] for name, (result, _) in ran.items()}
    assert commands["README.md"] == []  # its two commands install: not run, each says why
    assert commands["night.md"][:2] == [
        "ccdflow simulate sim", "ccdflow night sim/night1/raw --out reduced-night --caldb night.sqlite"]
    assert len(commands["caldb.md"]) >= 25, commands["caldb.md"]
    seconds = {name: round(s, 1) for name, (_, s) in ran.items()}
    print(f"doc pages ran in {seconds} s")
