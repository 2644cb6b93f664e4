"""A slow start (the store's migrations: converting a large history takes minutes on a small
box) asks systemd for more time before its start timeout, again and again, until READY."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from gateway.store import Store
from tests.support.app import running_app


async def test_a_slow_store_open_extends_the_start_timeout_until_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setattr("gateway.systemd.EXTEND_EVERY_S", 0.05)
    real_open = Store.open

    async def slow_open(self: Store) -> None:
        await asyncio.sleep(0.4)  # as a long migration would
        await real_open(self)

    monkeypatch.setattr(Store, "open", slow_open)
    try:
        async with running_app({"devices": [{"id": "m", "type": "simulated"}]}, tmp_path):
            await asyncio.sleep(0.2)
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        sock.close()
    ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
    extends = [m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC=")]
    assert len(extends) >= 4, messages  # 0.4 s at one every 0.05 s
    assert all(i < ready for i, m in enumerate(messages)
               if m.startswith("EXTEND_TIMEOUT_USEC=")), "none once the store is open"
    assert "STATUS=opening the store" in extends[0]
    assert int(extends[0].split("\n")[0].split("=")[1]) == 30_000_000
