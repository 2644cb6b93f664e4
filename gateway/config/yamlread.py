"""Read a YAML config file into plain data, refusing what would hang or crash the loader.

- The file must be UTF-8: a bad byte is reported at its line and column.
- libyaml's C parser and composer (when PyYAML has them) build the node tree, which keeps the
  line marks the located errors need, at a fraction of the pure-Python parser's CPU.
- Aliases may not expand the document by more than :data:`MAX_ALIAS_VALUES` values (a YAML
  "billion laughs" would otherwise keep the loader busy for minutes), may not refer to the
  collection that contains them, and nesting stops at :data:`MAX_DEPTH` levels.
- A key given twice in one mapping is an error (the later one would win silently).

Every check walks each distinct node once, so an alias bomb is refused in milliseconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config.errors import ConfigError, ConfigIssue

#: Values that aliases may add to a document (beyond the values written in the file).
MAX_ALIAS_VALUES = 1_000_000
#: Levels of nested mappings and lists.
MAX_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: Path) -> str:
    """The file as text; a located error when it cannot be read or is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError([ConfigIssue(path, 0, 0, "", f"cannot read: {err.strerror}")]) from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError([ConfigIssue(
            path, line, column, "",
            f"the file is not UTF-8 text (byte 0x{raw[err.start]:02x} here); "
            "save it as UTF-8",
        )]) from None
    return text[1:] if text.startswith("\ufeff") else text


def compose(text: str, path: Path, loader_class: Any = None) -> yaml.Node | None:
    """The node tree (with line marks) of the single document in ``text``. libyaml's error
    texts are terser than PyYAML's: a broken file is parsed again in Python to explain it."""
    if loader_class is None and _Loader is not yaml.SafeLoader:
        try:
            return compose(text, path, _Loader)
        except ConfigError:
            return compose(text, path, yaml.SafeLoader)
    loader = (loader_class or _Loader)(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        issue = ConfigIssue(path, line, col, "", f"invalid YAML: {err.problem}")
        raise ConfigError([issue]) from None
    except yaml.reader.ReaderError as err:  # a control character the YAML spec forbids
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        issue = ConfigIssue(path, line, column, "",
                            f"invalid YAML: character {err.character!r} is not allowed")
        raise ConfigError([issue]) from None
    except yaml.YAMLError as err:
        raise ConfigError([ConfigIssue(path, 0, 0, "", f"invalid YAML: {err}")]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue(
            path, 0, 0, "", f"invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)"
        )]) from None
    finally:
        loader.dispose()


def check_nodes(root: yaml.Node, path: Path) -> list[ConfigIssue]:
    """Duplicate keys, alias expansion, alias cycles and depth, each distinct node once."""
    issues: list[ConfigIssue] = []
    sizes: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded
    active: set[int] = set()
    locs: dict[int, tuple[Any, ...]] = {}  # where each node is first met
    stack: list[tuple[yaml.Node, tuple[Any, ...], bool]] = [(root, (), False)]
    while stack:
        node, loc, done = stack.pop()
        nid = id(node)
        if done:
            active.discard(nid)
            sizes[nid] = 1 + sum(sizes.get(id(c), 0) for c in _children(node))
            continue
        if nid in sizes:
            continue
        if nid in active:
            return [*issues, _at(path, node, loc, "an alias refers to a collection that "
                                 "contains it (a cycle); write the values out")]
        if len(loc) > MAX_DEPTH:
            return [*issues, _at(path, node, loc, f"nested more than {MAX_DEPTH} levels deep")]
        active.add(nid)
        locs.setdefault(nid, loc)
        stack.append((node, loc, True))
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key, _ in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                if name in seen:
                    issues.append(_at(path, key, (*loc, name),
                                      "duplicate key (the later one would win silently)"))
                seen.add(name)
            # Reversed, so nodes are first met in file order: an anchor at its own place.
            for key, value in reversed(node.value):
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((value, (*loc, name), False))
                stack.append((key, (*loc, name), False))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*loc, i), False)
                         for i, child in reversed(list(enumerate(node.value))))
    total, distinct = sizes.get(id(root), 0), len(sizes)
    if total - distinct > MAX_ALIAS_VALUES:
        # Point at the smallest collection that alone exceeds the limit: the anchor to fix.
        worst = min((n for n in _distinct(root) if sizes[id(n)] > MAX_ALIAS_VALUES),
                    key=lambda n: sizes[id(n)], default=root)
        issues.append(_at(path, worst, locs.get(id(worst), ()), (
            f"aliases expand this to {sizes[id(worst)]:,} values, more than the "
            f"{MAX_ALIAS_VALUES:,} allowed (an alias bomb?); write fewer nested aliases")))
    return issues


def construct(loader_node: yaml.Node) -> Any:
    """Plain data from a node tree checked by :func:`check_nodes`. Short strings are interned,
    so the names every device repeats (point names, units) are stored once."""
    loader = _Loader("")
    try:
        data = loader.construct_document(loader_node)
    finally:
        loader.dispose()
    return data


def intern_str(value: str) -> str:
    return sys.intern(value) if len(value) <= 64 else value


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _distinct(root: yaml.Node) -> list[yaml.Node]:
    seen: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(_children(node))
    return list(seen.values())


def _at(path: Path, node: yaml.Node, loc: tuple[Any, ...], message: str) -> ConfigIssue:
    from gateway.config.locate import format_loc

    mark = node.start_mark
    return ConfigIssue(path, mark.line + 1, mark.column + 1, format_loc(loc), message)
