"""Every hook is documented: a docstring in hookspecs.py and a section in docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ccdflow.framework.engine import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
SPEC_MARK = f"{hookspecs.PROJECT}_spec"
HOOKS = sorted(
    name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, SPEC_MARK)
)


def test_hookspecs_found():
    assert {"register_steps", "register_instruments", "identify_instrument", "run_step"} <= set(
        HOOKS
    )


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_docstring(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and doc.strip(), f"hookspec {name} (ccdflow/framework/engine/hookspecs.py) has no docstring"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_mentioned_in_plugin_guide(name):
    text = DOC.read_text()
    assert re.search(rf"\b{name}\b", text), f"hook {name} is not mentioned in {DOC}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_heading_matches_signature(name):
    """The guide's heading for a hook lists exactly the hook's parameters, in order."""
    params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    heading = f"### `{name}({params})`"
    headings = [line.strip() for line in DOC.read_text().splitlines() if line.startswith("### ")]
    assert heading in headings, (
        f"{DOC.name} has no heading {heading!r} for hook {name}; hook headings found: "
        f"{[h for h in headings if name in h]}"
    )


def test_guide_python_examples_compile():
    """Every ```python block of the guide is valid Python (they are copied into plugins)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    for n, block in enumerate(blocks, 1):
        compile(block, f"{DOC.name} python block {n}", "exec")
