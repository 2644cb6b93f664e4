"""Load a YAML site config: substitute ``${ENV}``, validate, and map every error back to the
line and column it came from.

The YAML is built into plain data straight from libyaml's events, with its checks (duplicate
keys, alias bombs, depth: :mod:`gateway.config.yamlread`); the node tree, which keeps the
positions, is composed only when there are errors to locate. Errors from
pydantic carry a ``loc`` path, walked through the node tree to find the position
(:mod:`gateway.config.locate`). Error messages never include input values, so secrets never
reach a log.

After validation, the checkers registered with :func:`gateway.config.site.register_checker`
cross-check sections (a rule naming a device that does not exist); their warnings are logged
and their errors fail the load like any other.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config.base import Problems
from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.site import SiteConfig, cross_check, device_types, prepare, site_model
from gateway.config.yamlread import build, compose, read_text

log = logging.getLogger(__name__)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: Path | str) -> SiteConfig:
    """Load and validate; raises :class:`ConfigError` listing every problem. Warnings (e.g. a
    rule whose device pattern selects nothing today) are logged."""
    config, warnings = check_config(path)
    for warning in warnings:
        log.warning("%s", warning)
    return config


def check_config(path: Path | str) -> tuple[SiteConfig, list[ConfigIssue]]:
    """The validated config and its warnings; raises :class:`ConfigError` on errors."""
    path = Path(path)
    text = read_text(path)
    env_errors: list[tuple[tuple[Any, ...], str]] = []

    def env(value: str, loc: tuple[Any, ...]) -> str:
        return _substitute(value, loc, env_errors)

    data, issues = build(text, path, env)
    if not isinstance(data, dict):
        issue = ConfigIssue(path, 1, 1, "", "the file must hold a mapping of sections")
        raise ConfigError([*issues, issue])
    locator = _Locator(text, path, data)
    for loc, message in env_errors:
        issues.append(locator.issue(loc, "env", message))
    for loc, message in _duplicate_ids(data):
        issues.append(locator.issue(loc, "duplicate_id", message))
    prepare(data, path)  # e.g. plugin drivers, whose device types the model must know
    model = site_model(device_types(data))  # imports only the drivers this site uses
    locator.model = model
    try:
        # "shared": a table where models keep one copy of equal frozen values (the points
        # of devices of one model), for this load only.
        config = model.model_validate(data, context={"check_files": True, "shared": {}})
    except ValidationError as err:
        errors = [_as_model_error(e) for e in err.errors(
            include_url=False, include_input=False, include_context=False)]
        for e in errors:
            issues.append(locator.issue(tuple(e["loc"]), e["type"], e["msg"]))
        for loc, message in _hidden_device_problems(data, errors):
            issues.append(locator.issue(loc, Problems.KIND, message))
        raise ConfigError(issues) from None
    if issues:
        raise ConfigError(issues)
    warnings: list[ConfigIssue] = []
    for loc, message, severity in cross_check(config):
        found = locator.issue(loc, "cross_check", message, severity)
        (issues if severity == "error" else warnings).append(found)
    if issues:
        raise ConfigError(issues + warnings)
    return config, warnings


class _Locator:
    """Turns a ``loc`` into a located issue; composes the text again on first use only."""

    def __init__(self, text: str, path: Path, data: Any) -> None:
        self.text, self.path, self.data = text, path, data
        self.model: Any = None
        self._root: yaml.Node | None = None

    def issue(self, loc: tuple[Any, ...], kind: str, message: str,
              severity: str = "error") -> ConfigIssue:
        if self._root is None:
            self._root = compose(self.text, self.path)
        assert self._root is not None
        from gateway.config import locate  # errors only: it loads difflib

        return locate.issue(self.path, self._root, self.data, self.model, loc, kind, message,
                            severity)


#: The error types of a pydantic dataclass (a Modbus point) that a model reports otherwise:
#: (the model's type, the model's message, or None to keep the message).
_DATACLASS_ERRORS = {
    "unexpected_keyword_argument": ("extra_forbidden", "Extra inputs are not permitted"),
    "dataclass_type": ("model_type", None),
}


def _as_model_error(error: Any) -> Any:
    """``error`` in the words a model would use, so every section reads alike."""
    found = _DATACLASS_ERRORS.get(error["type"])
    if found is None:
        return error
    kind, message = found
    if message is None:  # "Input should be a dictionary or an instance of PointConfig"
        message = error["msg"].replace("a dictionary or an", "a valid dictionary or")
    return {**error, "type": kind, "msg": message}


def _substitute(value: str, loc: tuple[Any, ...],
                errors: list[tuple[tuple[Any, ...], str]]) -> str:
    """``${NAME}`` and ``${NAME:-default}`` replaced; a variable without either is an error."""
    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        errors.append((loc, f"environment variable {name} is not set "
                            f"(export it, or write ${{{name}:-default}})"))
        return ""
    return _ENV.sub(repl, value)


def _duplicate_ids(data: Any) -> list[tuple[tuple[Any, ...], str]]:
    """Checked on the raw entries, so a duplicate is reported whatever else is wrong."""
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list):
        return []
    out: list[tuple[tuple[Any, ...], str]] = []
    seen: dict[str, int] = {}
    for index, device in enumerate(devices):
        device_id = device.get("id") if isinstance(device, dict) else None
        if not isinstance(device_id, str):
            continue
        if device_id in seen:
            out.append((("devices", index, "id"),
                        f"device id {device_id!r} is already used by devices[{seen[device_id]}]; "
                        "ids must be unique"))
        seen.setdefault(device_id, index)
    return out


def _hidden_device_problems(data: Any, errors: list[Any]) -> list[tuple[tuple[Any, ...], str]]:
    """Device-level problems of devices whose field errors kept their checks from running."""
    from drivers import registry
    from gateway.config.partial import device_problems  # errors only

    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list):
        return []
    known = set(registry.names())
    by_device: dict[int, list[tuple[Any, ...]]] = {}
    reported: set[tuple[tuple[Any, ...], str]] = set()
    for e in errors:
        loc = tuple(e["loc"])
        if len(loc) < 2 or loc[0] != "devices" or not isinstance(loc[1], int) \
                or loc[1] >= len(devices) or not isinstance(devices[loc[1]], dict):
            continue
        rel = loc[2:]
        tag = devices[loc[1]].get("type")
        if rel[:1] == (tag,) and tag not in devices[loc[1]]:
            rel = rel[1:]
        if e["type"] == Problems.KIND:
            reported.add((("devices", loc[1], *rel), e["msg"]))
        # A group's or a point's own check failing also keeps the device's checks from running.
        by_device.setdefault(loc[1], []).append(rel)
    out: list[tuple[tuple[Any, ...], str]] = []
    for index, rels in by_device.items():
        raw = devices[index]
        if raw.get("type") not in known:
            continue
        for loc, message in device_problems(registry.config_model(raw["type"]), raw, rels):
            found = (("devices", index, *loc), message)
            if found not in reported:
                out.append(found)
    return out

