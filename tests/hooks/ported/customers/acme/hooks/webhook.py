"""ACME's operations webhook (unchanged from the original platform)."""

import asyncio
import json
import os
import urllib.request


def _post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


async def post_json(kind, body):
    url = os.environ.get("ACME_WEBHOOK")
    if not url:
        return
    await asyncio.to_thread(_post, url, {"kind": kind, **body})
