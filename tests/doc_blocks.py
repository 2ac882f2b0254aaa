"""Run a doc page's command blocks as a user would, so the page cannot drift from the tool.

A page's fenced blocks are read in order:

- ```` ```yaml file=NAME ```` (any language, with ``file=NAME``): written to NAME;
- ```` ```console ````: each ``$ command`` line runs in a shell (``ccdflow`` is this checkout's,
  ``~`` the test's home); a trailing ``# exit N`` says the status it must end with (default 0).
  ``$ export NAME=VALUE`` sets NAME for the page's later commands.
  The lines after a command are output it must print, each as a substring of a line once runs
  of spaces and table borders are collapsed, in order within stdout or stderr (a terminal
  interleaves them; a summary moving from one stream to the other does not break a page).
  A line ``...``, ``(...)`` or ``(... words ...)`` stands for any lines; ``...`` inside a line
  for any text (a temporary folder, a hash);
- a console block right after ``<!-- not run: REASON -->`` is not run (pip install, a
  PostgreSQL server, a Dask cluster); the reason is in the page's source for its readers.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^(\s*)```(\S*)(.*)$")  # a fence may be indented (a block in a list item)
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->$")
_ELIDED = re.compile(r"^\(?\.\.\.(.*\.\.\.\))?\)?$")
_EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
#: Table borders (Rich's box drawing): not part of what a page promises.
_BORDERS = re.compile("[\u2500-\u257f]")


@dataclass
class Command:
    line: str
    status: int = 0
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # "file", "console" or "not run"
    text: str = ""
    name: str | None = None
    commands: list[Command] = field(default_factory=list)
    reason: str | None = None  # why a "not run" block is not run


def blocks(page: Path) -> list[Block]:
    """The page's file and console blocks, in order."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or not match.group(2):
            i += 1
            continue
        body = []
        start, indent = i, len(match.group(1))
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith("```"):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        i += 1
        name = re.search(r"file=(\S+)", match.group(3))
        not_run = _NOT_RUN.match(before)
        if name:
            out.append(Block("file", "\n".join(body) + "\n", name.group(1)))
        elif match.group(2) == "console":
            out.append(Block("not run" if not_run else "console", commands=_commands(body),
                             reason=not_run.group(1) if not_run else None))
    return out


def untagged_commands(page: Path) -> list[str]:
    """Lines of fenced blocks that are not ``console`` blocks but look like a command a reader
    would type (``$ ...``, ``ccdflow ...``, ``pip ...``): each should be in a console block,
    run or marked not run, so none escapes the test."""
    found, fenced, kind = [], False, ""
    for line in page.read_text().splitlines():
        match = _FENCE.match(line)
        if match and not fenced:
            fenced, kind = True, match.group(2)
            continue
        if line.lstrip().startswith("```") and fenced:
            fenced = False
            continue
        if fenced and kind != "console" and re.match(r"\s*(\$ |ccdflow |pip |git clone )", line):
            found.append(line)
    return found


def _commands(body: list[str]) -> list[Command]:
    commands: list[Command] = []
    for line in body:
        if line.startswith("$ "):
            text, _, comment = line[2:].partition("  # exit ")
            commands.append(Command(text.strip(), int(comment) if comment else 0))
        elif commands:
            commands[-1].expected.append(line)
    return commands


def shim(folder: Path) -> Path:
    """A ``ccdflow`` on PATH that runs this interpreter's ccdflow (the checkout under test)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "ccdflow"
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ccdflow \"$@\"\n")
    script.chmod(0o755)
    return folder


def run_page(page: Path, cwd: Path, env: dict[str, str]) -> list[tuple[Command, subprocess.CompletedProcess]]:
    """Write the page's files and run its commands in ``cwd``; assert each status and output."""
    env = {**env, "PATH": f"{shim(cwd / '.bin')}{os.pathsep}{env.get('PATH', '')}"}
    ran = []
    for block in blocks(page):
        if block.kind == "file":
            assert block.name is not None
            (cwd / block.name).write_text(block.text)
            continue
        if block.kind == "not run":
            assert block.reason, f"{page}: a block marked not run gives no reason"
            continue
        for command in block.commands:
            export = _EXPORT.match(command.line)
            if export:  # evaluated by the shell, kept for the page's later commands
                value = subprocess.run(["bash", "-c", f"{command.line}; printf %s \"${export.group(1)}\""],
                                       cwd=cwd, env=env, capture_output=True, text=True, check=True)
                env[export.group(1)] = value.stdout
            proc = subprocess.run(["bash", "-c", command.line], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=600)
            shown = f"$ {command.line}\n{proc.stdout}{proc.stderr}"
            assert proc.returncode == command.status, shown
            _check_output(command.expected, [proc.stdout, proc.stderr], shown)
            ran.append((command, proc))
    return ran


def _flat(line: str) -> str:
    return " ".join(_BORDERS.sub(" ", line).split())


def _matches(needle: str, line: str) -> bool:
    """``needle`` in ``line``, each ``...`` in it standing for any text."""
    at = 0
    for piece in needle.split("..."):
        found = line.find(piece.strip(), at)
        if found < 0:
            return False
        at = found + len(piece.strip())
    return True


def _check_output(expected: list[str], streams: list[str], shown: str) -> None:
    """Each expected line after the one before it in the same stream: a page shows a terminal,
    where stdout and stderr interleave, so lines from two streams may come in either order."""
    lines = [[_flat(line) for line in text.splitlines()] for text in streams]
    at = [0] * len(lines)
    for want in expected:
        needle = _flat(want)
        if not needle or _ELIDED.match(needle):
            continue
        for i, stream in enumerate(lines):
            found = next((j for j in range(at[i], len(stream)) if _matches(needle, stream[j])), None)
            if found is not None:
                at[i] = found + 1
                break
        else:
            raise AssertionError(f"the page says {want!r} is printed; it is not (in order):\n{shown}")
