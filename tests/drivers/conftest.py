"""Every event a driver emits in these tests is checked against the event catalogue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.testing import RecordingContext
from gateway import events
from gateway.model import Event


@pytest.fixture(autouse=True)
def _events_match_the_catalogue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    found: list[str] = []
    emit = RecordingContext.emit_event

    async def checked(self: RecordingContext, event: Event) -> None:
        found.extend(events.problems(event.type, event.body))
        await emit(self, event)

    monkeypatch.setattr(RecordingContext, "emit_event", checked)
    yield
    assert not found, "driver events that do not match gateway/events.py:\n" + "\n".join(found)
