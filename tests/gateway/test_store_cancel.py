"""A task cancelled while its transaction's BEGIN is in flight (a stop or a reload cancels
tasks at any await) must not leave the connection inside a transaction."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from gateway.store import Store


async def test_cancel_during_begin_leaves_no_open_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        for _ in range(20):  # the cancel lands at different points of BEGIN
            async def writer() -> None:
                async with store.transaction() as tx:
                    await tx.execute("SELECT 1")

            task = asyncio.create_task(writer())
            await asyncio.sleep(0)  # the task now waits for BEGIN in aiosqlite's thread
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            async with store.transaction() as tx:  # raised "within a transaction" before
                await tx.execute("SELECT 1")
    finally:
        await store.close()
