"""What a step or an options model says about itself, for `ccdflow config show` and `ccdflow
plugins`: one line per step and, per parameter, its type, default and description, read from the
Pydantic model (every step parameter has a description: ``validate_step_class`` refuses one
without), so the documentation shown is the code's own and cannot drift from it."""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict, get_args, get_origin

from pydantic import BaseModel


class ParamDoc(TypedDict):
    """One parameter: its type as text, default (JSON-safe) and description."""

    type: str
    default: Any
    description: str


def step_description(step: type) -> str:
    """The step's ``description``, else the first line of its docstring, else ''."""
    text = getattr(step, "description", "") or ""
    if not text and step.__doc__:
        text = step.__doc__.strip().splitlines()[0]
    return text.strip()


def type_text(annotation: Any) -> str:
    """``float``, ``float | None``, ``median | mean`` (a Literal's choices)."""
    if get_origin(annotation) is Literal:
        return " | ".join(str(a) for a in get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def param_docs(model: type[BaseModel]) -> dict[str, ParamDoc]:
    """Every field of ``model``: type, default and description, in declaration order."""
    docs: dict[str, ParamDoc] = {}
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        # a default JSON cannot carry (a tuple is fine, an object is not) is shown as text
        default = json.loads(json.dumps(default, default=str))
        docs[name] = {"type": type_text(field.annotation), "default": default,
                      "description": field.description or ""}
    return docs
