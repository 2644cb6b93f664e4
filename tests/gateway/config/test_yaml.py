"""What the fast YAML path must keep doing: anchors, aliases and merge keys, typed scalars,
integer keys, ${ENV} in aliased values, and the same data as PyYAML's own loader."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import yaml

from gateway.config.loader import load_config
from gateway.config.yamlread import build

from .cases import write

TEMPLATED = """\
gateway:
  id: site-1
  state_dir: {state}
devices:
  - &meter
    id: m0
    type: modbus
    host: ${FG_TEST_HOST:-127.0.0.1}
    interval: 2.5
    enabled: yes
    tags: [~, null, 1e3, 0x1F, "007", 2026-01-01]
    points: &points
      - {name: power, address: 0, type: float32, scale: 0.1}
      - {name: state, address: 2, enum: {0: ok, 1: fault}}
  - <<: *meter
    id: m1
    tags: []
  - <<: [*meter]
    id: m2
    interval: 1
    tags: []
    points: *points
"""


def test_same_data_as_pyyaml(tmp_path: Path) -> None:
    path = write(tmp_path, TEMPLATED)
    text = path.read_text()
    data, issues = build(text, path, lambda value, loc: value)
    assert issues == []
    assert data == yaml.safe_load(text)


def test_anchors_and_merge_keys_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FG_TEST_HOST", "10.0.0.7")
    config = load_config(write(tmp_path, TEMPLATED.replace("    tags: [~, null, 1e3, 0x1F, "
                                                           '"007", 2026-01-01]\n', "")))
    m0, m1, m2 = config.devices
    assert [m0.id, m1.id, m2.id] == ["m0", "m1", "m2"]
    assert m1.host == "10.0.0.7" and m1.interval == 2.5  # type: ignore[attr-defined]
    assert m2.interval == 1  # type: ignore[attr-defined]
    assert m2.all_points()["state"].enum == {0: "ok", 1: "fault"}  # type: ignore[attr-defined]


BROKEN = {
    "a: 1\na: 2\n": "duplicate key",
    "a: &x [1, *x]\n": "a cycle",
    "a: [1, 2\n": "invalid YAML",
    "a: !!int nope\n": "invalid YAML",
}


def test_libyaml_gets_its_own_event_classes_back(tmp_path: Path) -> None:
    """The build swaps libyaml's event classes for light ones while it runs, and puts them
    back whatever happened (a good file, an issue, an abort, a parse error)."""
    from gateway.config.errors import ConfigError

    native = yaml._yaml  # type: ignore[attr-defined]
    path = write(tmp_path, TEMPLATED)
    build(path.read_text(), path, lambda value, loc: value)
    for text in BROKEN:
        with pytest.raises(ConfigError) if "dup" not in BROKEN[text] else nullcontext():
            build(text, path, lambda value, loc: value)
    assert native.ScalarEvent is yaml.events.ScalarEvent
    assert native.MappingEndEvent is yaml.events.MappingEndEvent
    events = list(yaml.parse("a: [1]\n", Loader=yaml.CLoader))
    assert [type(e).__name__ for e in events][3:6] == ["ScalarEvent", "SequenceStartEvent",
                                                       "ScalarEvent"]


@pytest.mark.parametrize("text", list(BROKEN))
def test_pure_python_parser_builds_and_words_alike(tmp_path: Path, text: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml (PyYAML's pure-Python parser) the data and the issues are the same."""
    from gateway.config import yamlread
    from gateway.config.errors import ConfigError

    path = write(tmp_path, TEMPLATED)

    def outcome() -> object:
        try:
            return build(text, path, lambda value, loc: value)
        except ConfigError as err:
            return [(i.line, i.column, i.path, i.message) for i in err.issues]

    fast = outcome(), build(path.read_text(), path, lambda value, loc: value)
    monkeypatch.setattr(yamlread, "_Loader", yaml.SafeLoader)
    assert (outcome(), build(path.read_text(), path, lambda value, loc: value)) == fast
    assert BROKEN[text] in str(fast[0])
