"""Logs go to stderr as text or JSON lines, at the configured level."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import setup_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("drivers.modbus").warning("device %s offline", "meter-1")
    logging.getLogger("drivers.modbus").debug("not shown")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    assert lines[0]["level"] == "WARNING"
    assert lines[0]["logger"] == "drivers.modbus"
    assert lines[0]["msg"] == "device meter-1 offline"
    assert lines[0]["ts"].endswith("Z")


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", "text")
    logging.getLogger("x").debug("hello %d", 5)
    assert "DEBUG   x: hello 5" in capsys.readouterr().err
