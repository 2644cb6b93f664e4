"""Read a YAML config file into plain data, refusing what would hang or crash the loader.

- The file must be UTF-8: a bad byte is reported at its line and column.
- libyaml's C parser (when PyYAML has it) gives the events the data is built from directly,
  at a fraction of the pure-Python parser's CPU; the node tree, which keeps the line marks of
  the located validation errors, is composed only when there are errors to locate. While
  it reads, libyaml makes light event objects (see :func:`_light_events`): PyYAML's event
  classes run Python code for each of the ~300,000 events of a 25,000-point site.
- Aliases may not expand the document by more than :data:`MAX_ALIAS_VALUES` values (a YAML
  "billion laughs" would otherwise keep the loader busy for minutes), may not refer to the
  collection that contains them, and nesting stops at :data:`MAX_DEPTH` levels.
- A key given twice in one mapping is an error (the later one would win silently).

Aliases are counted, never expanded, so an alias bomb is refused in milliseconds.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
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


class _Abort(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        self.issue = issue


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MISSING = object()
_MERGE_KEY = object()
Env = Callable[[str, tuple[Any, ...]], str]


class _Frame:
    """A mapping or list being built (``key_mark``: where its pending key starts)."""

    __slots__ = ("anchor", "data", "key", "key_mark", "loc", "merged", "size")

    def __init__(self, data: Any, loc: tuple[Any, ...], anchor: str | None) -> None:
        self.data, self.loc, self.anchor = data, loc, anchor
        self.key: Any = _MISSING
        self.key_mark: Any = None
        self.merged: list[Any] = []
        self.size = 1


class _Event(BaseException):
    """An event of libyaml's parser, with only what it holds: ``ev.args``, in the order
    libyaml gives them (see :func:`_light_events`). Not an error: ``BaseException`` is the
    one built-in type whose constructor keeps any positional arguments without running
    Python code, so making one is about a third cheaper than PyYAML's event classes (whose
    ``__init__`` is Python). Never raised."""

    __slots__ = ()


class _Scalar(_Event):  # (anchor, tag, implicit, value, start_mark, end_mark, style)
    __slots__ = ()


class _Alias(_Event):  # (anchor, start_mark, end_mark)
    __slots__ = ()


class _MappingStart(_Event):  # (anchor, tag, implicit, start_mark, end_mark, flow_style)
    __slots__ = ()


class _SequenceStart(_Event):  # as _MappingStart
    __slots__ = ()


class _MappingEnd(_Event):  # (start_mark, end_mark)
    __slots__ = ()


class _SequenceEnd(_Event):  # (start_mark, end_mark)
    __slots__ = ()


class _StreamEnd(_Event):  # (start_mark, end_mark)
    __slots__ = ()


#: The names libyaml's parser (PyYAML's ``yaml._yaml``) makes its events with -> ours.
_LIGHT = {"ScalarEvent": _Scalar, "AliasEvent": _Alias, "MappingStartEvent": _MappingStart,
          "SequenceStartEvent": _SequenceStart, "MappingEndEvent": _MappingEnd,
          "SequenceEndEvent": _SequenceEnd, "StreamEndEvent": _StreamEnd}
_LIGHT_LOCK = threading.RLock()


@contextlib.contextmanager
def _light_events() -> Iterator[bool]:
    """libyaml's parser makes :class:`_Event` objects while this runs (True), when PyYAML
    has libyaml (else False: PyYAML's own events, made by its pure-Python parser).

    libyaml's parser looks its event classes up in its module's namespace at each event, so
    they are swapped there for the duration of one build, under a lock, and put back after.
    Only this module reads libyaml's events while they are swapped: ``gateway.confmgmt.boot``
    reads some before the build, in the same thread."""
    native: Any = getattr(yaml, "_yaml", None)
    if _Loader is yaml.SafeLoader or native is None \
            or not all(hasattr(native, name) for name in _LIGHT):
        yield False
        return
    with _LIGHT_LOCK:
        saved = {name: getattr(native, name) for name in _LIGHT}
        try:
            for name, light in _LIGHT.items():
                setattr(native, name, light)
            yield True
        finally:
            for name, cls in saved.items():
                setattr(native, name, cls)


def _as_light(ev: Any) -> _Event:
    """A PyYAML event (the pure-Python parser) as the :class:`_Event` libyaml's would be."""
    events = yaml.events
    kind = type(ev)
    if kind is events.ScalarEvent:
        return _Scalar(ev.anchor, ev.tag, ev.implicit, ev.value, ev.start_mark, ev.end_mark,
                       ev.style)
    if kind is events.AliasEvent:
        return _Alias(ev.anchor, ev.start_mark, ev.end_mark)
    if kind is events.MappingStartEvent or kind is events.SequenceStartEvent:
        start: type[_Event] = (_MappingStart if kind is events.MappingStartEvent
                               else _SequenceStart)
        return start(ev.anchor, ev.tag, ev.implicit, ev.start_mark, ev.end_mark,
                     ev.flow_style)
    ends: dict[Any, type[_Event]] = {events.MappingEndEvent: _MappingEnd,
                                     events.SequenceEndEvent: _SequenceEnd,
                                     events.StreamEndEvent: _StreamEnd}
    return ends.get(kind, _Event)(ev.start_mark, ev.end_mark)


class _Builder:
    """Plain data straight from libyaml's parse events, with the checks, in one pass.

    No node tree is built (that is most of PyYAML's time and memory on a big site); the node
    tree is composed only when there are errors to locate. The events are
    :class:`_Event` objects (see :func:`_light_events`). Aliases give the same object, as
    PyYAML does; the values they add are counted, and a file whose aliases add more than
    :data:`MAX_ALIAS_VALUES` is refused at the anchor that tipped it. Plain scalars are
    resolved once per distinct text, and short strings are interned, so the names every
    device repeats (point names, units) are stored once. ``env(text, loc)`` substitutes
    ``${VAR}`` in strings."""

    def __init__(self, path: Path, env: Env) -> None:
        self.path, self.env = path, env
        self.issues: list[ConfigIssue] = []
        # anchor -> (data, values it stands for, its loc, its mark)
        self.anchors: dict[str, tuple[Any, int, tuple[Any, ...], Any]] = {}
        self.open: set[str] = set()
        self.alias_values = 0
        self.plain: dict[str, Any] = {}
        self.resolver = yaml.resolver.Resolver()
        self.constructor = yaml.constructor.SafeConstructor()

    def run(self, get_event: Callable[[], _Event]) -> Any:
        plain, missing = self.plain, _MISSING
        scalar, mapping_start = _Scalar, _MappingStart
        starts = (_MappingStart, _SequenceStart)
        ends = (_MappingEnd, _SequenceEnd)
        get_event()  # StreamStart
        if type(get_event()) is _StreamEnd:
            return None
        stack: list[_Frame] = []
        top: _Frame | None = None
        while True:
            ev = get_event()
            kind = type(ev)
            if kind is scalar:
                size = 1
                anchor, tag, implicit, text, start, _, _ = ev.args
                # The fast path of most of a big file: a plain scalar seen before (a point's
                # keys, its type and unit); see _scalar.
                if anchor is None and tag is None and implicit[0]:
                    value = plain.get(text, missing)
                    if value is missing:
                        value = self._scalar(ev, self._loc(stack))
                else:
                    loc = self._loc(stack)
                    value = self._scalar(ev, loc)
                    if anchor is not None:
                        self.anchors[anchor] = (value, 1, loc, start)
            elif kind is _Alias:
                value, size = self._alias(ev, self._loc(stack))
                start = ev.args[1]
            elif kind in starts:
                anchor, tag, _, start = ev.args[:4]
                loc = self._loc(stack)
                if len(stack) >= MAX_DEPTH:
                    raise _Abort(self._at(start, loc,
                                          f"nested more than {MAX_DEPTH} levels deep"))
                if tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
                    raise _Abort(self._at(start, loc, f"unsupported tag {tag!r}"))
                data: Any = {} if kind is mapping_start else []
                top = _Frame(data, loc, anchor)
                stack.append(top)
                if anchor is not None:
                    self.open.add(anchor)
                    self.anchors[anchor] = (data, 0, loc, start)
                continue
            elif kind in ends:
                frame = stack.pop()
                top = stack[-1] if stack else None
                value, size = frame.data, frame.size
                start = ev.args[0]
                if frame.merged:  # `<<: *defaults`: keys given here win, then the first merged
                    base: dict[Any, Any] = {}
                    for other in reversed(frame.merged):
                        if isinstance(other, dict):
                            base.update(other)
                    base.update(value)
                    value.clear()
                    value.update(base)
                if frame.anchor is not None:
                    self.open.discard(frame.anchor)
                    mark = self.anchors[frame.anchor][3]
                    self.anchors[frame.anchor] = (value, size, frame.loc, mark)
            else:  # pragma: no cover - libyaml sends no other event inside a document
                raise _Abort(self._at(ev.args[0], self._loc(stack), "invalid YAML"))
            if top is None:
                get_event()  # DocumentEnd
                if type(get_event()) is not _StreamEnd:
                    raise yaml.YAMLError("more than one document")
                return value
            # _add, inlined for the common cases: a list item, a key, a key's value
            top.size += size
            data = top.data
            if type(data) is list:
                data.append(value)
            elif top.key is missing:
                if isinstance(value, (dict, list)):
                    raise _Abort(self._at(start, top.loc,
                                          "a key must be a plain value, not a list or a mapping"))
                top.key, top.key_mark = value, start
            else:
                key, top.key = top.key, missing
                if key in data or key is _MERGE_KEY:
                    self._add_special(top, key, value)
                else:
                    data[key] = value

    def _loc(self, stack: list[_Frame]) -> tuple[Any, ...]:
        if not stack:
            return ()
        top = stack[-1]
        if isinstance(top.data, list):
            return (*top.loc, len(top.data))
        return (*top.loc, "?" if top.key is _MISSING else top.key)

    def _add_special(self, frame: _Frame, key: Any, value: Any) -> None:
        """A merge key's value, or a key given twice (``frame.key_mark`` is its event)."""
        if key is _MERGE_KEY:
            frame.merged.extend(value if isinstance(value, list) else [value])
            return
        self.issues.append(self._at(frame.key_mark, (*frame.loc, key),
                                    "duplicate key (the later one would win silently)"))
        frame.data[key] = value

    def _alias(self, ev: _Event, loc: tuple[Any, ...]) -> tuple[Any, int]:
        anchor, start = ev.args[:2]
        found = self.anchors.get(anchor)
        if found is None:
            raise yaml.YAMLError("undefined alias")  # composed again for PyYAML's message
        if anchor in self.open:
            raise _Abort(self._at(start, loc, "an alias refers to a collection that "
                                  "contains it (a cycle); write the values out"))
        value, size, where, mark = found
        self.alias_values += size
        if self.alias_values > MAX_ALIAS_VALUES:
            raise _Abort(self._at(mark, where, (
                f"aliases expand this document by more than the {MAX_ALIAS_VALUES:,} "
                f"values allowed (this anchor stands for {size:,}; an alias bomb?); "
                "write fewer nested aliases")))
        return value, size

    def _scalar(self, ev: _Event, loc: tuple[Any, ...]) -> Any:
        _, tag, implicit, text, start, end, style = ev.args
        plain = tag in (None, "!") and implicit[0]
        if plain:
            cached = self.plain.get(text, _MISSING)
            if cached is not _MISSING:
                return cached
            tag = self.resolver.resolve(yaml.ScalarNode, text, (True, False))
        elif tag in (None, "!"):
            tag = _STR
        if tag == _STR:
            if "${" in text:
                return self.env(text, loc)
            value: Any = sys.intern(text) if len(text) <= 64 else text
        elif tag == _MERGE:
            value = _MERGE_KEY
        else:
            node = yaml.ScalarNode(tag, text, start, end, style)
            try:
                value = self.constructor.construct_object(node)
            except yaml.MarkedYAMLError as err:
                raise _Abort(self._at(start, loc, f"invalid YAML: {err.problem}")) \
                    from None
            except (ValueError, TypeError, OverflowError):  # `!!int nope`: PyYAML's int()
                kind = tag.rsplit(":", 1)[-1]
                raise _Abort(self._at(start, loc, (
                    f"invalid YAML: the value is not a valid !!{kind}; fix it or drop "
                    f"the !!{kind} tag"))) from None
            self.constructor.constructed_objects.clear()
        if plain:  # str, int, float, bool, None, a date: immutable, so shared by equal texts
            self.plain[text] = value
        return value

    def _at(self, mark: Any, loc: tuple[Any, ...], message: str) -> ConfigIssue:
        from gateway.config.locate import format_loc

        return ConfigIssue(self.path, mark.line + 1, mark.column + 1, format_loc(loc), message)


def build(text: str, path: Path, env: Env) -> tuple[Any, list[ConfigIssue]]:
    """The data of the single document in ``text``, and its issues (duplicate keys); raises
    :class:`ConfigError` for what makes the rest meaningless (invalid YAML, alias bombs,
    alias cycles, depth)."""
    builder = _Builder(path, env)
    with _light_events() as light:
        loader = _Loader(text)
        get_event = loader.get_event if light else lambda: _as_light(loader.get_event())
        try:
            data = builder.run(get_event)
        except _Abort as abort:
            raise ConfigError([*builder.issues, abort.issue]) from None
        except (yaml.YAMLError, RecursionError):
            pass  # composed below, with PyYAML's events, for its own located words
        else:
            return data, builder.issues
        finally:
            loader.dispose()
    compose(text, path)  # raises with PyYAML's own, located, words
    raise ConfigError([ConfigIssue(path, 0, 0, "", "invalid YAML")]) from None
