"""Device-level checks of a device that also has field errors.

Pydantic runs a model's ``after`` validators only when every field validated, so a device
with one bad field would hide its duplicate point names, its overlong points and the rest.
To report every problem at once, the loader validates the device again without what failed
(a bad point is left out, a bad scalar falls back to its default) and keeps the device-level
problems (:class:`gateway.config.base.Problems`) that this second pass finds, mapped back to
the indices of the file.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from gateway.config.base import Problems

Loc = tuple[Any, ...]


def device_problems(model: type[BaseModel], raw: Any, field_errors: list[Loc]) -> list[
        tuple[Loc, str]]:
    """``(loc, message)`` of the device-level problems of ``raw`` (one device entry) once the
    parts at ``field_errors`` (locs relative to the device) are left out."""
    if not isinstance(raw, dict) or not field_errors:
        return []
    prune = {_prune_point(loc) for loc in field_errors}
    if () in prune:
        return []  # the entry itself is wrong: nothing sensible to check
    maps: dict[Loc, list[int]] = {}
    pruned = _without(raw, prune, (), maps)
    try:
        _lenient(model).model_validate(pruned)
    except ValidationError as err:
        out: list[tuple[Loc, str]] = []
        for e in err.errors(include_url=False, include_input=False):
            if e["type"] != Problems.KIND:
                continue
            loc = _original(tuple(e["loc"]), maps)
            if not any(loc[:len(p)] == p for p in prune):
                out.append((loc, e["msg"]))
        return out
    except Exception:  # a check that cannot cope with a left-out field: nothing to add
        return []
    return []


@functools.cache
def _lenient(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with its required fields optional, so a device whose required field was
    left out (a bad ``url``) still gets its other checks. A check that needs the missing
    field fails, and is then skipped (see above)."""
    required: dict[str, Any] = {
        name: (info.annotation | None, None)  # type: ignore[operator]
        for name, info in model.model_fields.items() if info.is_required()}
    if not required:
        return model
    lenient: type[BaseModel] = create_model(f"Lenient{model.__name__}", __base__=model,
                                            **required)
    return lenient


def _prune_point(loc: Loc) -> Loc:
    """What to leave out for an error at ``loc``: the list element it is in (a point without
    its address is no point), else the key itself."""
    last = max((i for i, part in enumerate(loc) if isinstance(part, int)), default=-1)
    return loc[:last + 1] if last >= 0 else loc[:1]


def _without(value: Any, prune: set[Loc], here: Loc, maps: dict[Loc, list[int]]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, prune, (*here, k), maps) for k, v in value.items()
                if (*here, k) not in prune}
    if isinstance(value, list):
        kept = [i for i in range(len(value)) if (*here, i) not in prune]
        if len(kept) != len(value):
            maps[here] = kept
        return [_without(value[i], prune, (*here, i), maps) for i in kept]
    return value


def _original(loc: Loc, maps: dict[Loc, list[int]]) -> Loc:
    out: list[Any] = []
    for part in loc:
        if isinstance(part, int) and tuple(out) in maps:
            kept = maps[tuple(out)]
            part = kept[part] if part < len(kept) else part
        out.append(part)
    return tuple(out)
