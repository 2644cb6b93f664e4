"""Load a YAML site config: substitute ``${ENV}``, validate, and map every error back to the
line and column it came from.

The YAML is composed into a node tree first (which keeps positions), then constructed. Errors
from pydantic carry a ``loc`` path; we walk the same path through the node tree to find the
position. Error messages never include input values, so secrets never reach a log.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.site import SiteConfig, device_types, prepare, site_model

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_MESSAGES = (
    ("Input should be ", "must be "),
    ("Field required", "is required"),
    ("Extra inputs are not permitted", "unknown key (check the spelling)"),
    ("Value error, ", ""),
    ("String should ", "must "),
    ("List should ", "must "),
)


def load_config(path: Path | str) -> SiteConfig:
    """Load and validate; raises :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([ConfigIssue(path, 0, 0, "", f"cannot read: {err.strerror}")]) from err
    issues: list[ConfigIssue] = []
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        issue = ConfigIssue(path, line, col, "", f"invalid YAML: {err.problem}")
        raise ConfigError([issue]) from err
    if node is None or not isinstance(data, dict):
        issue = ConfigIssue(path, 1, 1, "", "the file must hold a mapping of sections")
        raise ConfigError([issue])
    _check_duplicate_keys(node, path, [], issues)
    data = _substitute(data, node, path, [], issues)
    prepare(data, path)  # e.g. plugin drivers, whose device types the model must know
    model = site_model(device_types(data))  # imports only the drivers this site uses
    try:
        config = model.model_validate(data)
    except ValidationError as err:
        for e in err.errors(include_url=False, include_input=False, include_context=False):
            issues.append(_issue(path, node, data, e["loc"], e["type"], e["msg"]))
        raise ConfigError(issues) from None
    seen: dict[str, int] = {}
    for index, device in enumerate(config.devices):
        if device.id in seen:
            issues.append(_issue(path, node, data, ("devices", index, "id"), "duplicate_id",
                                 f"device id {device.id!r} is already used by "
                                 f"devices[{seen[device.id]}]; ids must be unique"))
        seen.setdefault(device.id, index)
    if issues:
        raise ConfigError(issues)
    return config


def _substitute(value: Any, node: yaml.Node, file: Path, loc: list[Any],
                issues: list[ConfigIssue]) -> Any:
    if isinstance(value, dict) and isinstance(node, yaml.MappingNode):
        children = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        return {k: _substitute(v, children.get(k, node), file, [*loc, k], issues)
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(node, yaml.SequenceNode):
        return [_substitute(v, n, file, [*loc, i], issues)
                for i, (v, n) in enumerate(zip(value, node.value, strict=False))]
    if isinstance(value, str) and "${" in value:
        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            mark = node.start_mark
            issues.append(ConfigIssue(
                file, mark.line + 1, mark.column + 1, _format_loc(loc),
                f"environment variable {name} is not set "
                f"(export it, or write ${{{name}:-default}})",
            ))
            return ""
        return _ENV.sub(repl, value)
    return value


def _check_duplicate_keys(node: yaml.Node, file: Path, loc: list[Any],
                          issues: list[ConfigIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, child in node.value:
            if key.value in seen:
                mark = key.start_mark
                issues.append(ConfigIssue(file, mark.line + 1, mark.column + 1,
                                          _format_loc([*loc, key.value]),
                                          "duplicate key (the later one would win silently)"))
            seen.add(key.value)
            _check_duplicate_keys(child, file, [*loc, key.value], issues)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _check_duplicate_keys(child, file, [*loc, i], issues)


def _issue(file: Path, root: yaml.Node, data: Any, loc: tuple[Any, ...], kind: str,
           msg: str) -> ConfigIssue:
    node: yaml.Node = root
    key_node: yaml.Node | None = None
    path: list[Any] = []
    if loc[:1] == ("devices",) and (
        (kind.startswith("union_tag") and len(loc) == 2)
        or (kind == "literal_error" and len(loc) == 3 and loc[2] == "type")
    ):
        # With several drivers pydantic reports the union's tag, with one the Literal:
        # either way the problem is the device's type, so say that, at the type.
        loc = ("devices", loc[1], "type")
        msg = _device_type_message(data, loc[1], kind)
        kind = "union_tag"
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str) and part not in data \
                and data.get("type") == part:
            continue  # the tag pydantic adds inside a discriminated union
        path.append(part)
        key_node = None
        if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is not None:
                key_node, node = found
            data = data.get(part) if isinstance(part, str) else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and isinstance(data, list) and part < len(node.value):
            node, data = node.value[part], data[part]
        else:
            data = None
    # An unknown key is reported where the key is, everything else where its value is.
    mark = (key_node if kind == "extra_forbidden" and key_node is not None else node).start_mark
    return ConfigIssue(file, mark.line + 1, mark.column + 1, _format_loc(path),
                       _friendly(kind, msg))


def _device_type_message(data: Any, index: Any, kind: str) -> str:
    from drivers.registry import names

    known = ", ".join(names())
    try:
        given = data["devices"][index].get("type")
    except (KeyError, IndexError, TypeError, AttributeError):
        given = None
    if kind == "union_tag_not_found" or given is None:
        return f"is required (the driver to use; known types: {known})"
    return f"unknown device type {given!r}; known types: {known}"


def _friendly(kind: str, msg: str) -> str:
    if kind.startswith("union_tag") or kind == "duplicate_id":
        return msg
    for old, new in _MESSAGES:
        msg = msg.replace(old, new)
    return msg


def _format_loc(loc: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
