"""gateway.channels.http.post on the aiohttp client, against a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.channels.http import MAX_BODY, post
from tests.support.mosquitto import free_port


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=201, body=await request.read(),
                            headers={"X-Got": request.headers.get("X-Token", "")})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_BODY + 10))

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"errcode": 40001}, status=403)

    app = web.Application()
    app.add_routes([web.post("/echo", echo), web.post("/slow", slow), web.post("/big", big),
                    web.post("/refuse", refuse)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_post_returns_status_and_body(server: str) -> None:
    resp = await post(server + "/echo", b'{"a": 1}', {"X-Token": "t"}, timeout=5)
    assert resp.status == 201 and resp.body == b'{"a": 1}'


async def test_non_2xx_is_a_response(server: str) -> None:
    resp = await post(server + "/refuse", b"{}", {}, timeout=5)
    assert resp.status == 403 and "40001" in resp.text()


async def test_body_is_capped(server: str) -> None:
    resp = await post(server + "/big", b"{}", {}, timeout=5)
    assert len(resp.body) == MAX_BODY


async def test_timeout_and_refused_raise_oserror(server: str) -> None:
    with pytest.raises(OSError):
        await post(server + "/slow", b"{}", {}, timeout=0.3)
    with pytest.raises(OSError):
        await post(f"http://127.0.0.1:{free_port()}/x", b"{}", {}, timeout=5)
    with pytest.raises(OSError, match=r"InvalidUrl|bad url"):
        await post("not a url", b"{}", {}, timeout=5)
