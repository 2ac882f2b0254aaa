"""Run a doc page's command blocks as a user would, so the page cannot drift from the tool.

A page's fenced blocks are read in order:

- ```` ```yaml file=NAME ```` (any language, with ``file=NAME``): written to NAME;
- ```` ```console ````: each ``$ command`` line runs in a shell (``ccdflow`` is this checkout's,
  ``~`` the test's home); a trailing ``# exit N`` says the status it must end with (default 0).
  The lines after a command are output it must print, in order, each as a substring of a line
  once runs of spaces are collapsed; ``...`` stands for any lines.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass
class Command:
    line: str
    status: int = 0
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # "file" or "console"
    text: str = ""
    name: str | None = None
    commands: list[Command] = field(default_factory=list)


def blocks(page: Path) -> list[Block]:
    """The page's file and console blocks, in order."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or not match.group(1):
            i += 1
            continue
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        name = re.search(r"file=(\S+)", match.group(2))
        if name:
            out.append(Block("file", "\n".join(body) + "\n", name.group(1)))
        elif match.group(1) == "console":
            out.append(Block("console", commands=_commands(body)))
    return out


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
        for command in block.commands:
            proc = subprocess.run(["bash", "-c", command.line], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=600)
            shown = f"$ {command.line}\n{proc.stdout}{proc.stderr}"
            assert proc.returncode == command.status, shown
            _check_output(command.expected, proc.stdout + proc.stderr, shown)
            ran.append((command, proc))
    return ran


def _check_output(expected: list[str], output: str, shown: str) -> None:
    lines = [" ".join(line.split()) for line in output.splitlines()]
    at = 0
    for want in expected:
        if want.strip() in ("", "..."):
            continue
        needle = " ".join(want.split())
        while at < len(lines) and needle not in lines[at]:
            at += 1
        assert at < len(lines), f"the page says {want!r} is printed; it is not (in order):\n{shown}"
        at += 1
