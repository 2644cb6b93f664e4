"""A readable diff of two site configs: devices added, removed and changed (by id), rules,
the uplink, other sections, and a unified text diff (secrets redacted)."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from gateway.confmgmt.versions import redact


def _mapping(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _keyed(items: Any, key: str) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {str(item.get(key, index)): item for index, item in enumerate(items)
            if isinstance(item, dict)}


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose value differs (secrets are named, never shown)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _list_diff(old: Any, new: Any, key: str) -> dict[str, list[str]]:
    before, after = _keyed(old, key), _keyed(new, key)
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k]),
    }


def config_diff(old_text: str, new_text: str) -> dict[str, Any]:
    old, new = _mapping(old_text), _mapping(new_text)
    rules_old, rules_new = old.get("rules") or {}, new.get("rules") or {}
    rules: dict[str, Any]
    if isinstance(rules_old, dict) and isinstance(rules_new, dict):
        rules = {"changed": _changed_keys(rules_old, rules_new)}
        for key in ("alarms", "quotas"):
            if isinstance(rules_old.get(key), list) or isinstance(rules_new.get(key), list):
                rules[key] = _list_diff(rules_old.get(key), rules_new.get(key), "name")
    else:
        rules = {"changed": [] if rules_old == rules_new else ["rules"]}
    others = sorted(k for k in set(old) | set(new)
                    if k not in ("devices", "rules", "uplink") and old.get(k) != new.get(k))
    text = "".join(difflib.unified_diff(
        redact(old_text).splitlines(keepends=True), redact(new_text).splitlines(keepends=True),
        "running", "new", n=2))
    return {
        "devices": _list_diff(old.get("devices"), new.get("devices"), "id"),
        "rules": rules,
        "uplink": _changed_keys(old.get("uplink") or {}, new.get("uplink") or {}),
        "sections": others,
        "text": text,
    }


def summary(diff: dict[str, Any]) -> str:
    """One line: ``devices +2 -1 ~0; rules changed; uplink: broker.host``."""
    d = diff["devices"]
    parts = [f"devices +{len(d['added'])} -{len(d['removed'])} ~{len(d['changed'])}"]
    if diff["rules"]["changed"]:
        parts.append("rules changed")
    if diff["uplink"]:
        parts.append("uplink: " + ", ".join(diff["uplink"][:5]))
    if diff["sections"]:
        parts.append("sections: " + ", ".join(diff["sections"]))
    if len(parts) == 1 and not any(d.values()):
        parts = ["no change" if not diff["text"] else "formatting only"]
    return "; ".join(parts)
