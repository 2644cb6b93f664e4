"""Map a validation error's ``loc`` back to the line and column it came from, in words a
user understands, with "did you mean" for unknown keys.

The node tree, the raw data and the model's types are walked along the same ``loc``: the
nodes give the position, the data and the types recognise the tags pydantic adds inside a
discriminated union (``devices[0].modbus.points`` is ``devices[0].points`` in the file).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic.fields import FieldInfo

from gateway.config.errors import ConfigIssue

_MESSAGES = (
    ("Input should be ", "must be "),
    ("Field required", "is required"),
    ("Extra inputs are not permitted", "unknown key (check the spelling)"),
    ("Value error, ", ""),
    ("String should ", "must "),
    ("List should ", "must "),
)


@dataclass
class Where:
    node: yaml.Node
    key_node: yaml.Node | None = None
    path: list[Any] = field(default_factory=list)
    owner: Any = None  # the type that holds the last key (for "did you mean")


def issue(file: Path, root: yaml.Node, data: Any, model: Any, loc: tuple[Any, ...],
          kind: str, msg: str, severity: str = "error") -> ConfigIssue:
    """A located issue for one error of ``model`` validating ``data`` (composed as ``root``)."""
    if loc[:1] == ("devices",) and (
        (kind.startswith("union_tag") and len(loc) == 2)
        or (kind == "literal_error" and len(loc) == 3 and loc[2] == "type")
    ):
        # With several drivers pydantic reports the union's tag, with one the Literal:
        # either way the problem is the device's type, so say that, at the type.
        loc = ("devices", loc[1], "type")
        msg = _device_type_message(data, loc[1], kind)
        kind = "union_tag"
    where = walk(root, data, model, loc)
    # An unknown key is reported where the key is, everything else where its value is.
    extra = kind == "extra_forbidden"
    node = where.key_node if extra and where.key_node is not None else where.node
    mark = node.start_mark
    text = _friendly(kind, msg)
    if extra and where.path:
        hint = did_you_mean(where.owner, str(where.path[-1]), where.path[:-1])
        if hint:
            text = f"{text}; did you mean `{hint}`?"
    return ConfigIssue(file, mark.line + 1, mark.column + 1, format_loc(where.path), text,
                       severity)


def walk(root: yaml.Node, data: Any, model: Any, loc: tuple[Any, ...]) -> Where:
    where = Where(root)
    node: yaml.Node = root
    tp: Any = model
    for part in loc:
        if isinstance(part, str) and isinstance(data, dict) and part not in data:
            member = _union_member(tp, part)
            if member is not None or data.get("type") == part:
                tp = member if member is not None else tp
                continue  # the tag pydantic adds inside a discriminated union
        where.path.append(part)
        where.owner = tp
        tp = _step(tp, part)
        where.key_node = None
        if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is not None:
                where.key_node, node = found
            data = data.get(part) if isinstance(part, str) else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and isinstance(data, list) and part < len(node.value):
            node, data = node.value[part], data[part]
        else:
            data = None
    where.node = node
    return where


def did_you_mean(owner: Any, key: str, prefix: list[Any]) -> str | None:
    """The field the user probably meant by ``key`` where ``owner``'s fields are allowed: a
    close spelling at this level, else the same (or a close) name one or two levels down
    (``uplink.host`` -> ``uplink.broker.host``)."""
    models = [m for m in _options(owner) if _is_model(m)]
    if not models:
        return None
    levels: list[list[tuple[str, ...]]] = [[], [], []]
    for m in models:
        for names in _field_paths(m, depth=2):
            levels[len(names) - 1].append(names)
    # The same name at any level first, then a close spelling here, then one further down.
    tries = [(paths, 1.0) for paths in levels] + [(levels[0], 0.6)]
    tries += [(paths, 0.8) for paths in levels[1:]]
    for paths, cutoff in tries:
        found = difflib.get_close_matches(key, [p[-1] for p in paths], n=1, cutoff=cutoff)
        if found:
            best = next(p for p in paths if p[-1] == found[0])
            return format_loc([*prefix, *best])
    return None


def format_loc(loc: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def close_match(word: str, choices: list[str]) -> str | None:
    """The closest of ``choices`` (the first in order among equals), if close enough."""
    best, best_score = None, 0.6
    for choice in choices:
        score = difflib.SequenceMatcher(None, word, choice).ratio()
        if score > best_score or (score == best_score and best is not None and choice < best):
            best, best_score = choice, score
    return best


def _field_paths(model: Any, depth: int) -> Iterator[tuple[str, ...]]:
    for name, info in _fields(model).items():
        key = info.alias or name
        yield (key,)
        if depth > 1:
            for sub in _options(info.annotation):
                if _is_model(sub):
                    for rest in _field_paths(sub, depth - 1):
                        yield (key, *rest)


def _step(tp: Any, part: Any) -> Any:
    for option in _options(tp):
        if _is_model(option) and isinstance(part, str):
            for name, info in _fields(option).items():
                if part in (name, info.alias):
                    return info.annotation
        origin = typing.get_origin(option)
        args = typing.get_args(option)
        if isinstance(part, int) and origin in (list, tuple, set, frozenset) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None


def _union_member(tp: Any, tag: str) -> Any:
    """The member of a union of models whose Literal tag field equals ``tag``."""
    models = [m for m in _options(tp) if _is_model(m)]
    if len(models) < 2:
        return None
    for m in models:
        for info in _fields(m).values():
            if typing.get_origin(info.annotation) is Literal and \
                    tag in typing.get_args(info.annotation):
                return m
    return None


def _options(tp: Any) -> list[Any]:
    """``tp`` without Annotated and Optional: the union's members, or ``[tp]``."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_options(arg))
        return out
    return [] if tp is None else [tp]


def _is_model(tp: Any) -> bool:
    """A model, or a pydantic dataclass (a Modbus point)."""
    return isinstance(tp, type) and (issubclass(tp, BaseModel)
                                     or is_pydantic_dataclass(tp))


def _fields(tp: Any) -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = (tp.model_fields if issubclass(tp, BaseModel)
                                    else tp.__pydantic_fields__)
    return fields


def _device_type_message(data: Any, index: Any, kind: str) -> str:
    from drivers.registry import names as driver_names

    names = driver_names()
    known = ", ".join(names)
    try:
        given = data["devices"][index].get("type")
    except (KeyError, IndexError, TypeError, AttributeError):
        given = None
    if kind == "union_tag_not_found" or given is None:
        return f"is required (the driver to use; known types: {known})"
    hint = close_match(str(given), names)
    mean = f"; did you mean `{hint}`?" if hint else ""
    return f"unknown device type {given!r}; known types: {known}{mean}"


def _friendly(kind: str, msg: str) -> str:
    if kind.startswith("union_tag") or kind == "duplicate_id":
        return msg
    for old, new in _MESSAGES:
        msg = msg.replace(old, new)
    return msg
