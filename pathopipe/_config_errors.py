"""Configuration errors that say what to fix: the key as the user wrote it (a discriminated
union's tag left out), the keys allowed there with a close match, the allowed names of a
registry-backed value."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, Discriminator, ValidationError
from pydantic_core import PydanticCustomError

from pathopipe._registry import did_you_mean

__all__ = ["config_key", "format_validation", "known_name", "section_models"]


def known_name(registry: Any, value: str, *, also: tuple[str, ...] = (), choice: bool = False) -> str:
    """``value`` if ``registry`` has an entry of that name (or it is one of ``also``), else an
    error listing them; ``choice``: worded as pydantic words a choice among a few literals."""
    if value in also or value in registry:
        return value
    names = [*also, *registry.names()]
    if choice:
        quoted = [repr(n) for n in names]
        expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    raise ValueError(
        f"unknown {registry.kind} {value!r}; allowed: {', '.join(names)}{did_you_mean(value, names)}"
    )


def section_models(annotation: Any) -> dict[str, type[BaseModel]]:
    """A section's models by tag: ``{"": model}`` for a plain model, one per ``method`` for a
    discriminated union (``tissue``), {} for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"": annotation}
    found = {}
    for member in typing.get_args(annotation):
        model, *meta = typing.get_args(member) or (member,)
        tag = next((m.tag for m in meta if hasattr(m, "tag")), None)
        if isinstance(model, type) and issubclass(model, BaseModel) and tag is not None:
            found[str(tag)] = model
    return found


def config_key(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[str, ...], list[str]]:
    """The key a user wrote for an error at ``loc`` (union tags left out), and the keys allowed
    beside its last part."""
    model: type[BaseModel] | None = root
    key: list[str] = []
    parts = [str(p) for p in loc]
    i = 0
    while i < len(parts) - 1 and model is not None:
        field = model.model_fields.get(parts[i])
        key.append(parts[i])
        members = section_models(getattr(field, "annotation", None))
        tagged = any(isinstance(m, Discriminator) for m in getattr(field, "metadata", ()))
        if "" in members:
            model = members[""]
            i += tagged and i + 1 < len(parts) - 1  # a union of one: its tag is not part of the key
        elif i + 1 < len(parts) - 1 and parts[i + 1] in members:
            model = members[parts[i + 1]]
            i += 1  # the tag of a union member is not part of the key
        else:
            model = None
        i += 1
    key += parts[i:]
    return tuple(key), list(model.model_fields) if model is not None else []


def format_validation(err: ValidationError, source: str, root: type[BaseModel]) -> str:
    """A pydantic error as lines naming each bad key (as the user wrote it), the allowed keys
    with a close match, and the bad value."""
    lines = [f"invalid configuration ({source}):"]
    for item in err.errors():
        key, allowed = config_key(root, tuple(item["loc"]))
        dotted = ".".join(key)
        if item["type"] == "extra_forbidden":
            parent = ".".join(key[:-1])

            def dotted_key(near: str, parent: str = parent) -> str:
                return repr(f"{parent}.{near}" if parent else near)

            hint = did_you_mean(key[-1], allowed, n=1, show=dotted_key)
            lines.append(f"  unknown key {dotted!r}; allowed here: {', '.join(allowed)}{hint}")
        elif item["type"] == "union_tag_invalid":
            context = item.get("ctx", {})
            lines.append(f"  {dotted}.method: unknown method {context.get('tag')!r}; allowed: "
                         f"{context.get('expected_tags')}")  # fmt: skip
        else:
            lines.append(f"  {dotted}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)
