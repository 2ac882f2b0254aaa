"""The Python code of docs/tutorial.md and docs/api.md runs as shown: every ```python block of a
page, in order, in one namespace, in an empty temporary folder; any error (or a failed assert in
a block) fails the test and names the block."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return [textwrap.dedent(b) for b in _BLOCK.findall(page.read_text())]


@pytest.mark.parametrize("page", ["tutorial.md", "api.md"])
def test_page_python_blocks_run_in_order(page, tmp_path, monkeypatch):
    blocks = python_blocks(DOCS / page)
    assert len(blocks) >= 5, f"{page}: expected its python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f"{page} block {i}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page}, python block {i} failed:\n{code}") from exc
    db = namespace.get("db")
    if hasattr(db, "close"):
        db.close()
