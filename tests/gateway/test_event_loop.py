"""The daemon's event loop: uvloop for a site of UVLOOP_FROM_DEVICES devices or more, the
standard loop for a smaller one, on request, or without uvloop."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
import uvloop

from gateway.runtime import LOOP_ENV, UVLOOP_FROM_DEVICES, event_loop_factory, loop_name


def run_on(factory: object) -> str:
    with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
        return runner.run(_name())


async def _name() -> str:
    return loop_name()


@pytest.mark.parametrize("value", [None, "auto", " Auto "])
def test_auto_takes_uvloop_from_ten_devices_on(monkeypatch: pytest.MonkeyPatch,
                                               value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(LOOP_ENV, value)
    assert UVLOOP_FROM_DEVICES == 10
    assert event_loop_factory(9) is None
    assert event_loop_factory(0) is None
    factory = event_loop_factory(10)
    assert factory is uvloop.new_event_loop
    assert run_on(factory) == "uvloop"
    assert run_on(event_loop_factory(1)) == "asyncio"


@pytest.mark.parametrize("devices", [0, 1, 500])
def test_env_forces_either_loop(monkeypatch: pytest.MonkeyPatch, devices: int) -> None:
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert event_loop_factory(devices) is None
    monkeypatch.setenv(LOOP_ENV, "UVLOOP")
    assert event_loop_factory(devices) is uvloop.new_event_loop


def test_unknown_value_warns_and_is_auto(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(LOOP_ENV, "trio")
    with caplog.at_level(logging.WARNING, logger="gateway.runtime"):
        assert event_loop_factory(10) is uvloop.new_event_loop
        assert event_loop_factory(1) is None
    assert ("FIELDGATE_LOOP='trio' is not a loop fieldgate knows (auto, uvloop or asyncio): "
            "using auto") in caplog.text


def test_without_uvloop_the_standard_loop(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with caplog.at_level(logging.INFO, logger="gateway.runtime"):
        assert event_loop_factory(100) is None
    assert "uvloop is not available" in caplog.text
    assert "running on the standard asyncio loop" in caplog.text
