"""Password checks under a reconnect storm: one scrypt per charger, bounded concurrency,
HTTP 503 with Retry-After (not an unbounded queue) when too many checks wait."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from drivers.ocpp.security import AuthBusy, PasswordChecker, basic_auth_header, hash_password
from tests.drivers.ocpp.conftest import PASSWORD, charger, server
from tests.support.wait import wait_until

_STORED = hash_password(PASSWORD)


async def connect(url: str, cid: str, password: str = PASSWORD) -> Any:
    return await websockets.connect(
        f"{url}/{cid}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": basic_auth_header(cid, password)})


async def test_concurrent_checks_of_one_charger_share_one_scrypt() -> None:
    checker = PasswordChecker(workers=1)
    try:
        assert await asyncio.gather(*(checker.check("cp-1", PASSWORD, _STORED)
                                      for _ in range(5))) == [True] * 5
        assert checker.runs == 1
        assert await checker.check("cp-1", PASSWORD, _STORED)
        assert checker.runs == 1, "a verified pair is answered from the cache"
        # the same password is not accepted for another user (the key includes the user)
        assert await checker.check("cp-2", PASSWORD, _STORED)
        assert checker.runs == 2
        # a wrong password is never cached: each attempt pays the full check
        assert not await checker.check("cp-1", "wrong-password-but-long", _STORED)
        assert not await checker.check("cp-1", "wrong-password-but-long", _STORED)
        assert checker.runs == 4
        assert checker.pending == 0
    finally:
        checker.close()


async def test_full_queue_raises_busy_instead_of_growing() -> None:
    checker = PasswordChecker(workers=1, max_pending=2)
    try:
        results = await asyncio.gather(
            *(checker.check("cp-1", f"wrong-password-number-{i}", _STORED) for i in range(3)),
            return_exceptions=True)
        assert results[:2] == [False, False]
        assert isinstance(results[2], AuthBusy)
        assert checker.pending == 0
        assert await checker.check("cp-1", PASSWORD, _STORED), "the queue drains and recovers"
    finally:
        checker.close()


async def test_storm_of_chargers_costs_one_check_each(make_gateway: Any) -> None:
    ids = [f"cp-{i}" for i in range(24)]
    gw = await make_gateway([server(auth_workers=2), *(charger(c) for c in ids)])
    checker = gw.driver.hub.passwords
    for _round in range(2):  # the second round is a reconnect storm: answered from the cache
        sockets = await asyncio.gather(*(connect(gw.url, c) for c in ids))
        assert len(gw.driver.hub.sessions) == len(ids)
        await asyncio.gather(*(ws.close() for ws in sockets))
        assert checker.runs == len(ids)


async def test_busy_answers_503_with_retry_after_and_one_warning(
    make_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway([server(auth_workers=1, auth_max_pending=6),
                             *(charger(f"cp-{i}") for i in range(3))])
    caplog.set_level(logging.WARNING, logger="drivers.ocpp.server")
    checker = gw.driver.hub.passwords
    # The one worker is held until both chargers were answered, so the six wrong-password
    # checks behind it stay queued (unheld, they drained ~30 ms each and the second charger
    # sometimes got in: the test raced the machine's speed).
    hold = threading.Event()
    checker._pool.submit(hold.wait, 30)
    hogs = [asyncio.create_task(checker.check("cp-0", f"wrong-password-number-{i}", _STORED))
            for i in range(6)]
    await wait_until(lambda: checker.pending == 6, 5, what="six checks queued")
    for cid in ("cp-1", "cp-2"):
        with pytest.raises(InvalidStatus) as info:
            await connect(gw.url, cid)
        assert info.value.response.status_code == 503
        assert info.value.response.headers["Retry-After"].isdigit()
    busy = [r for r in caplog.records if "HTTP 503" in r.getMessage()]
    assert len(busy) == 1, "one warning per burst, not one per charger"
    assert "cp-1" in busy[0].getMessage() and "auth_workers" in busy[0].getMessage()
    hold.set()
    assert await asyncio.gather(*hogs) == [False] * 6
    ws = await connect(gw.url, "cp-1")  # the charger's retry gets in
    await ws.close()
