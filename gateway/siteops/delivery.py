"""What siteops sends over the uplink: each generated report (inline or in chunks, with the
sha256 of the whole file) and the finished day's KPIs, queued in the uplink's message queue
(:mod:`gateway.uplink.messages`) inside the transaction that records them.

Wire format v1, one JSON object per message (schemas ``config/wire/report.schema.json`` and
``config/wire/kpis.schema.json``; docs/operations.md has how to reassemble a report).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.rules.quotas import Period, period_of
from gateway.store import Tx
from gateway.uplink import messages

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

WIRE_VERSION = 1
CONTENT_TYPES = {".csv": "text/csv", ".html": "text/html"}

MIGRATIONS = [
    """
    CREATE TABLE siteops_kpis_sent (
        day     TEXT PRIMARY KEY,
        sent_ts INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
]


def uplink_configured(comp: SiteOpsComponent) -> bool:
    up = getattr(comp.ctx.site, "uplink", None)
    return bool(up is not None and up.enabled
                and (up.broker is not None or up.embedded_broker is not None))


def report_messages(gateway: str, body: dict[str, Any], files: list[tuple[Path, bytes]],
                    inline_max: int, chunk_bytes: int) -> list[tuple[str, bytes]]:
    """(key, payload) per message: one per file when it is small, else one per chunk."""
    out = []
    for path, data in files:
        size = len(data)
        step = size if size <= inline_max else chunk_bytes
        parts = [data[i:i + step] for i in range(0, size, step)] if size else [b""]
        digest = hashlib.sha256(data).hexdigest()
        for i, part in enumerate(parts):
            key = f"{body['report_id']}/{path.name}/{i}"
            msg = {"v": WIRE_VERSION, "type": "report", "gw": gateway, "key": key,
                   "report_id": body["report_id"], "name": body["name"],
                   "period": body["period"], "period_start_ts": body["period_start_ts"],
                   "period_end_ts": body["period_end_ts"],
                   "generated_ts": body["generated_ts"], "file": path.name,
                   "content_type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                   "bytes": size, "sha256": digest, "chunk": i, "chunks": len(parts),
                   "encoding": "base64", "data": base64.b64encode(part).decode("ascii")}
            out.append((key, json.dumps(msg, separators=(",", ":")).encode()))
    return out


async def queue_report(comp: SiteOpsComponent, tx: Tx, body: dict[str, Any],
                       files: list[tuple[Path, bytes]], uplink: bool = True) -> int:
    """Queue the report's messages in ``tx`` (the one that records it); how many.
    ``uplink``: the report's own target (``deliver.uplink``, else ``delivery.uplink``)."""
    cfg = comp.section.reports.delivery
    if not uplink or not uplink_configured(comp):
        return 0
    if cfg.files == "csv":
        files = [f for f in files if f[0].suffix == ".csv"]
    store, now = comp.ctx.store, comp.ctx.clock.now_ms()
    msgs = report_messages(comp.ctx.site.gateway.id, body, files, cfg.inline_max_bytes,
                           cfg.chunk_bytes)
    for key, payload in msgs:
        await messages.enqueue(store, tx, "report", key, payload, now)
    return len(msgs)


def last_day(comp: SiteOpsComponent, now_ms: int) -> Period:
    today = period_of(now_ms, "day", comp.tz)
    return period_of(today.start_ms - 1, "day", comp.tz)


async def send_daily_kpis(comp: SiteOpsComponent, now_ms: int) -> bool:
    """Once per finished local day (the first scheduler pass after midnight): the day's
    built-in KPIs and the plugins' (``calculate_custom_kpis`` with period ``yesterday``),
    queued as one ``kpis`` message. True when one was queued now."""
    if not comp.section.kpis.daily_message or not uplink_configured(comp):
        return False
    from gateway.siteops.kpis import figures, kpis

    day = last_day(comp, now_ms)
    key = day.start.isoformat()
    store = comp.ctx.store
    if await store.query_one("SELECT 1 FROM siteops_kpis_sent WHERE day = ?", (key,)):
        return False
    values = await kpis(comp, "yesterday", await figures(comp, day.start_ms, day.end_ms))
    msg = {"v": WIRE_VERSION, "type": "kpis", "gw": comp.ctx.site.gateway.id,
           "key": f"kpis/{key}", "day": key, "timezone": str(comp.tz),
           "start_ts": day.start_ms, "end_ts": day.end_ms, "generated_ts": now_ms,
           "kpis": values["kpis"], "conflicts": values["conflicts"],
           "failed": values["failed"]}
    payload = json.dumps(msg, separators=(",", ":"), default=str).encode()
    async with store.transaction() as tx:
        cur = await tx.execute("INSERT OR IGNORE INTO siteops_kpis_sent VALUES (?, ?)",
                               (key, now_ms))
        if cur.rowcount != 1:
            return False
        await messages.enqueue(store, tx, "kpis", f"kpis/{key}", payload, now_ms)
    return True



async def uplink_pending(comp: SiteOpsComponent, report_ids: list[str]) -> dict[str, int]:
    """report id -> its messages still queued for the uplink (not yet acknowledged)."""
    if not report_ids or not uplink_configured(comp):
        return {}
    out = {}
    for rid in report_ids:
        row = await comp.ctx.store.query_one(
            "SELECT COUNT(*) FROM uplink_messages WHERE kind = 'report' AND key >= ? AND "
            "key < ?", (rid + "/", rid + "0"))
        out[rid] = int(row[0]) if row else 0
    return out
