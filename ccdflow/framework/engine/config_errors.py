"""Configuration validation errors as one line per problem a user can act on: where, which
key, what was found, what was expected, and for an unknown key the closest known one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError


def describe_validation(source: str, prefix: str, exc: ValidationError,
                        model: type[BaseModel] | None = None) -> str:
    """One line per problem: where, which key, what was found, what was expected; an unknown key
    of ``model`` (or of a model inside it) gets the closest known key (``gain_tabel``: did you
    mean ``gain_table``?)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        if err["type"] == "extra_forbidden":
            known = _keys_at(model, err["loc"][:-1]) if model is not None else []
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"{source}: {loc}: unknown key (value {err['input']!r}){hint}")
        else:
            lines.append(f"{source}: {loc}: {err['msg']}; got {err.get('input')!r}")
    return "\n".join(lines)


def _keys_at(model: type[BaseModel], path: Sequence[Any]) -> list[str]:
    """The keys allowed where ``path`` (a pydantic error location) leads inside ``model``: fields
    of nested models, through the keys of mappings and the indexes of lists."""
    current: Any = model
    for part in path:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            continue  # a mapping's key or a list's index: the item model stays current
        current = _model_in(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Geometry``, ``dict[str, MatchRule]``,
    ``list[RecipeEntry] | None``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
