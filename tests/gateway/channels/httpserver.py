"""A small real HTTP/1.1 server on 127.0.0.1 for channel tests (asyncio streams).

Records every request; answers with ``reply(request) -> (status, json body)``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Reply = Callable[[Request], tuple[int, Any]]


class Server:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[Request] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode()
            method, target, _ = line.split(" ", 2)
            headers: dict[str, str] = {}
            while (h := (await reader.readline()).decode().rstrip("\r\n")):
                k, v = h.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parts = urllib.parse.urlsplit(target)
            # Keep query values raw (still percent-encoded) so tests can check the encoding.
            query = dict(p.split("=", 1) for p in parts.query.split("&") if p)
            req = Request(method, parts.path, query, headers, body)
            self.requests.append(req)
            status, payload = self.reply(req)
            data = json.dumps(payload).encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + data)
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def http_server(reply: Reply) -> AsyncIterator[Server]:
    server = Server(reply)
    srv = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    server.port = srv.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        srv.close()
        await srv.wait_closed()
