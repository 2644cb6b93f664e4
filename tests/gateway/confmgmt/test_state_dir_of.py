"""``state_dir_of`` reads only the ``gateway`` section of a bootstrap file, and says what a
full ``yaml.safe_load`` of the file would say."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from gateway.confmgmt.boot import _state_dir, state_dir_of


def by_full_load(text: str) -> Path | None:
    """The old way: build the whole document."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return _state_dir(data.get("gateway") if isinstance(data, dict) else None)


CASES = [
    "gateway: {id: x, state_dir: /a}\n",
    "devices: []\ngateway:\n  id: g\n  state_dir: ${FIELDGATE_TEST_UNSET:-/b}/s\n",
    "gateway:\n  id: g\n",
    "a: &x /q\ngateway: {state_dir: *x}\n",
    "x: &g {state_dir: /r}\ngateway: *g\n",
    "gateway: &g {state_dir: /t}\nother: *g\n",
    "- 1\n",
    "",
    "# only a comment\n",
    "gateway: [1]\n",
    "gateway: {state_dir: 3}\n",
    "gateway: {state_dir: ''}\n",
    "? [a]\n: 1\ngateway: {state_dir: /z}\n",
    "devices:\n  - {id: a, points: [{name: p, address: 0}]}\ngateway:\n  state_dir: \"/q r\"\n",
    "gateway:\n  state_dir: /x\n  :bad: [\n",
    "!!binary abc\n",
    "gateway: {state_dir: !!str 12}\n",
]


@pytest.mark.parametrize("text", CASES)
def test_same_answer_as_building_the_whole_document(text: str) -> None:
    assert state_dir_of(text) == by_full_load(text)


def test_a_big_site_is_not_built() -> None:
    devices = "".join(
        f"  - id: m{d:03d}\n    type: modbus\n    host: 127.0.0.1\n    points:\n" + "".join(
            f"      - name: r{p:03d}\n        address: {p}\n        type: uint16\n"
            for p in range(125)) for d in range(200))
    text = f"gateway:\n  id: big\n  state_dir: /var/lib/big\ndevices:\n{devices}"
    assert len(re.findall("name:", text)) == 25_000
    start = time.process_time()
    assert state_dir_of(text) == Path("/var/lib/big")
    # the whole document takes seconds to build in pure Python; the section, milliseconds
    assert time.process_time() - start < 0.5
