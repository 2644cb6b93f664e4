"""Scheduled reports: CSV always, plus a small HTML page with an SVG chart, per finished
period (daily, weekly, monthly in the site timezone), under ``state_dir/reports/``.

Exactly once, also across a kill -9: the files get a name fixed by (report, period) and are
written to a temporary name, flushed and renamed; only then one transaction records the
report and commits ``report_generated`` (stable id). A crash before that transaction leaves
no record, so the next run writes the same files again and records them once; a crash after
it leaves the record, so the period is never generated twice.

The figures come from what the component logs off the outbox (alarms, status changes,
charging sessions: tables ``siteops_log_*``) and from the local history (energy).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import events
from gateway.model import Event, event_id
from gateway.rules.quotas import Period, period_of
from gateway.siteops import delivery
from gateway.siteops.config import ReportDef
from gateway.siteops.tariff import price_at, price_order
from gateway.siteops.webhook import PENDING, ReportWebhooks

if TYPE_CHECKING:
    from gateway.siteops.component import SiteOpsComponent

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
_PERIOD = {"daily": "day", "weekly": "week", "monthly": "month"}

MIGRATIONS = [
    """
    CREATE TABLE siteops_reports (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        period       TEXT NOT NULL,
        scheduled    INTEGER NOT NULL,
        start_ts     INTEGER NOT NULL,
        end_ts       INTEGER NOT NULL,
        files        TEXT NOT NULL,
        generated_ts INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX siteops_reports_by_name ON siteops_reports (name, period);
    CREATE TABLE siteops_log_alarms (
        alarm_id TEXT PRIMARY KEY, rule TEXT NOT NULL, device TEXT, severity TEXT NOT NULL,
        message TEXT NOT NULL, started_ts INTEGER NOT NULL, resolved_ts INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE siteops_log_status (
        device TEXT NOT NULL, ts INTEGER NOT NULL, status TEXT NOT NULL,
        PRIMARY KEY (device, ts, status)
    ) WITHOUT ROWID;
    CREATE TABLE siteops_log_charging (
        order_id TEXT PRIMARY KEY, charger TEXT NOT NULL, started_ts INTEGER,
        stopped_ts INTEGER, energy_wh REAL, cost REAL
    ) WITHOUT ROWID;
    """,
    # The session's energy and cost per tariff period: {"peak": [wh, cost], ...}.
    "ALTER TABLE siteops_log_charging ADD COLUMN periods TEXT;",
]


def period_key(report: ReportDef, p: Period) -> str:
    if report.period == "monthly":
        return p.start.strftime("%Y-%m")
    if report.period == "weekly":
        year, week, _ = p.start.isocalendar()
        return f"{year}-W{week:02d}"
    return p.start.isoformat()


class Reports:
    def __init__(self, comp: SiteOpsComponent) -> None:
        self.comp = comp
        self.ctx = comp.ctx
        self.cfg = comp.section.reports
        self.defs = {d.name: d for d in self.cfg.definitions}
        self.dir = self.ctx.state_dir / "reports"
        self._lock = asyncio.Lock()
        self.webhooks = ReportWebhooks(comp)

    def remove_partial_files(self) -> int:
        """Delete ``*.tmp`` left by a process killed while writing a report (the report
        was not recorded, so the scheduler writes it again)."""
        stale = list(self.dir.glob("*.tmp")) if self.dir.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            log.info("reports: %d partial file(s) of an interrupted run removed from %s",
                     len(stale), self.dir)
        return len(stale)

    # -- the outbox log ------------------------------------------------------------------

    async def log_event(self, ev: Event) -> None:
        b = ev.body
        store = self.ctx.store
        if ev.type == events.ALARM_CREATED:
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT OR IGNORE INTO siteops_log_alarms VALUES (?, ?, ?, ?, ?, ?, NULL)",
                    (b.get("alarm_id"), b.get("rule", ""), b.get("device"),
                     b.get("severity", ""), b.get("message", ""),
                     b.get("started_ts") or ev.ts_ms))
        elif ev.type == events.ALARM_RESOLVED:
            async with store.transaction() as tx:
                await tx.execute("UPDATE siteops_log_alarms SET resolved_ts = ? WHERE "
                                 "alarm_id = ?", (b.get("resolved_ts") or ev.ts_ms,
                                                  b.get("alarm_id")))
        elif ev.type == events.DEVICE_STATUS_CHANGED:
            async with store.transaction() as tx:
                await tx.execute("INSERT OR IGNORE INTO siteops_log_status VALUES (?, ?, ?)",
                                 (b.get("device"), ev.ts_ms, b.get("new_status")))
        elif ev.type == events.CHARGING_ORDER_COMPLETED:
            tariff = self.comp.section.tariff
            if tariff is not None:  # priced already, unless committed before the tariff
                b = price_order(tariff, self.comp.tz, ev).body
            by_wh, by_cost = b.get("energy_by_period") or {}, b.get("cost_by_period") or {}
            periods = {k: [v, by_cost.get(k)] for k, v in by_wh.items()}
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT OR REPLACE INTO siteops_log_charging VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (b.get("order_id"), b.get("charger", ""), b.get("started_ts"),
                     b.get("stopped_ts"), b.get("energy_wh"), b.get("cost"),
                     json.dumps(periods) if periods else None))

    # -- scheduling ----------------------------------------------------------------------

    def last_finished(self, report: ReportDef, now_ms: int) -> Period:
        current = period_of(now_ms, _PERIOD[report.period], self.comp.tz)
        return period_of(current.start_ms - 1, _PERIOD[report.period], self.comp.tz)

    async def run_due(self, now_ms: int) -> list[dict[str, Any]]:
        """Generate each report whose last finished period has no record yet."""
        out = []
        for report in self.defs.values():
            p = self.last_finished(report, now_ms)
            rid = event_id("report", report.name, period_key(report, p))
            if await self.ctx.store.query_one("SELECT 1 FROM siteops_reports WHERE id = ?",
                                              (rid,)):
                continue
            out.append(await self.generate(report, p, rid, scheduled=True))
        await self.prune(now_ms)
        return out

    async def run(self, name: str, at_ms: int | None = None) -> dict[str, Any]:
        """On demand (``reports.run``): the period holding ``at_ms`` (default: the last
        finished one); recorded under its own id, so it never blocks the scheduled one."""
        report = self.defs.get(name)
        if report is None:
            raise LookupError(f"no report {name!r}; the reports are: "
                              f"{', '.join(self.defs) or 'none configured'}")
        now = self.ctx.clock.now_ms()
        p = (period_of(at_ms, _PERIOD[report.period], self.comp.tz) if at_ms is not None
             else self.last_finished(report, now))
        rid = event_id("report", report.name, period_key(report, p), "run", str(now))
        return await self.generate(report, p, rid, scheduled=False)

    # -- generation ----------------------------------------------------------------------

    async def generate(self, report: ReportDef, p: Period, rid: str,
                       scheduled: bool) -> dict[str, Any]:
        # One at a time: the scheduler and reports.run write the same file names.
        async with self._lock:
            return await self._generate(report, p, rid, scheduled)

    async def _generate(self, report: ReportDef, p: Period, rid: str,
                        scheduled: bool) -> dict[str, Any]:
        key = period_key(report, p)
        data = await self.figures(report, p)
        base = self.dir / f"{report.name}-{key}"
        files = [(base.with_suffix(".csv"), to_csv(data))]
        if report.html:
            files.append((base.with_suffix(".html"), to_html(report, key, data)))
        await asyncio.to_thread(_write_all, files)
        csv_bytes = files[0][1]
        now = self.ctx.clock.now_ms()
        body = {"report_id": rid, "name": report.name, "period": key, "format": "csv",
                "file_path": str(files[0][0]), "generated_ts": now,
                "period_start_ts": p.start_ms, "period_end_ts": p.end_ms,
                "files": [str(f) for f, _ in files],
                "sha256": hashlib.sha256(csv_bytes).hexdigest(), "bytes": len(csv_bytes)}
        targets = self.cfg.delivery.targets(report)
        async with self.ctx.store.transaction() as tx:
            cur = await tx.execute(
                "INSERT OR IGNORE INTO siteops_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, report.name, key, int(scheduled), p.start_ms, p.end_ms,
                 json.dumps(body["files"]), now))
            if cur.rowcount == 1:
                await tx.add_events([Event(events.REPORT_GENERATED, body,
                                           id=event_id(events.REPORT_GENERATED, rid))])
                await delivery.queue_report(self.comp, tx, body, files, targets.uplink)
                if targets.webhook is not None:
                    posted = [f for f, _ in files
                              if self.cfg.delivery.files == "all" or f.suffix == ".csv"]
                    await self.webhooks.queue(tx, rid, targets.webhook, posted, now)
        if targets.webhook is not None:
            self.webhooks.notify()
        log.info("report %s for %s written: %s", report.name, key, body["file_path"])
        return body

    async def figures(self, report: ReportDef, p: Period) -> dict[str, list[list[Any]]]:
        """section -> rows [subject, metric, value, unit]."""
        store = self.ctx.store
        out: dict[str, list[list[Any]]] = {}
        start, end = p.start_ms, p.end_ms
        if "energy" in report.include and self.comp.history is not None:
            totals = await self.comp.history.energy_total(start, end)
            rows = [[d, "energy", round(wh / 1000, 6), "kWh"] for d, wh in sorted(totals.items())]
            rows.append(["site", "energy", round(sum(totals.values()) / 1000, 6), "kWh"])
            out["energy"] = rows + await self.energy_by_period(start, end)
        if "alarms" in report.include:
            rows = []
            for alarm_id, rule, device, sev, started, resolved in await store.query(
                    "SELECT alarm_id, rule, device, severity, started_ts, resolved_ts FROM "
                    "siteops_log_alarms WHERE started_ts < ? AND (resolved_ts IS NULL OR "
                    "resolved_ts >= ?) ORDER BY started_ts", (end, start)):
                s, e = max(started, start), min(resolved if resolved is not None else end, end)
                rows.append([device or "site", f"{rule} ({sev}) {alarm_id}",
                             round((e - s) / 1000, 3), "s"])
            out["alarms"] = rows
        if "availability" in report.include:
            out["availability"] = await self.availability(start, end)
        if "charging" in report.include:
            rows = []
            currency = self.comp.section.tariff.currency if self.comp.section.tariff else ""
            for oid, charger, started, stopped, wh, cost, periods in await store.query(
                    "SELECT order_id, charger, started_ts, stopped_ts, energy_wh, cost, "
                    "periods FROM siteops_log_charging WHERE stopped_ts >= ? AND "
                    "stopped_ts < ? ORDER BY stopped_ts", (start, end)):
                rows.append([charger, f"session {oid} energy", round((wh or 0) / 1000, 6),
                             "kWh"])
                if started is not None:
                    rows.append([charger, f"session {oid} duration",
                                 round((stopped - started) / 1000, 3), "s"])
                if cost is not None:
                    rows.append([charger, f"session {oid} cost", cost, currency])
                split = json.loads(periods) if periods else {}
                if len(split) > 1:  # a session across tariff periods: its share of each
                    for name, (p_wh, p_cost) in sorted(split.items()):
                        rows.append([charger, f"session {oid} energy {name}",
                                     round(p_wh / 1000, 6), "kWh"])
                        rows.append([charger, f"session {oid} cost {name}", p_cost,
                                     currency])
            out["charging"] = rows
        return out

    async def energy_by_period(self, start: int, end: int) -> list[list[Any]]:
        """With a tariff: energy and cost per device and for the site, per tariff period.
        Each 15-minute slot of the history counts in the period of its start (so tariff
        periods should begin on a quarter hour)."""
        tariff, history = self.comp.section.tariff, self.comp.history
        if tariff is None or history is None:
            return []
        wh: dict[tuple[str, str], float] = {}
        cost: dict[tuple[str, str], float] = {}
        for device, slots in (await history.energy(start, end, resolution="15m")).items():
            for slot in slots:
                name, price = price_at(tariff, slot["ts"], self.comp.tz)
                for key in ((device, name), ("site", name)):
                    wh[key] = wh.get(key, 0.0) + slot["wh"]
                    cost[key] = cost.get(key, 0.0) + slot["wh"] / 1000 * price
        rows: list[list[Any]] = []
        for subject, name in sorted(wh, key=lambda k: (k[0] == "site", k)):
            rows.append([subject, f"energy {name}", round(wh[subject, name] / 1000, 6), "kWh"])
            rows.append([subject, f"cost {name}", round(cost[subject, name], 4),
                         tariff.currency])
        return rows

    async def availability(self, start: int, end: int) -> list[list[Any]]:
        """Per configured device: % of the observed part of the period not offline, from its
        status changes. Time before the gateway first knew the device's status is left out
        (a gateway installed at noon reports the afternoon, not 50 %); None if never known."""
        rows = []
        for dev in self.ctx.site.devices:
            before = await self.ctx.store.query_one(
                "SELECT status FROM siteops_log_status WHERE device = ? AND ts < ? "
                "ORDER BY ts DESC LIMIT 1", (dev.id, start))
            changes = await self.ctx.store.query(
                "SELECT ts, status FROM siteops_log_status WHERE device = ? AND ts >= ? "
                "AND ts < ? ORDER BY ts", (dev.id, start, end))
            status: str | None = before[0] if before else None
            t, up, seen = start, 0, 0
            for ts, new in [*changes, (end, None)]:
                if status is not None:
                    seen += ts - t
                    up += ts - t if status != "offline" else 0
                status, t = new, ts
            pct = round(100 * up / seen, 3) if seen else None
            rows.append([dev.id, "availability", pct, "%"])
        return rows

    async def prune(self, now_ms: int) -> int:
        """Delete the reports older than ``retention_days`` with their files, except those
        with a webhook delivery still pending (deleted once it is delivered or given up)."""
        cutoff = now_ms - int(self.cfg.retention_days * DAY_MS)
        old = await self.ctx.store.query(
            "SELECT id, name, period, files, EXISTS (SELECT 1 FROM siteops_report_deliveries d "
            "WHERE d.report_id = siteops_reports.id AND d.status = ?) FROM siteops_reports "
            "WHERE generated_ts < ?", (PENDING, cutoff))
        kept = [(name, period) for _, name, period, _, pending in old if pending]
        if kept:
            log.info("reports: %d past retention kept while their webhook delivery is "
                     "pending: %s", len(kept), ", ".join(f"{n} {p}" for n, p in kept[:5]))
        old = [r for r in old if not r[4]]
        for _, _, _, files, _ in old:
            for f in json.loads(files):
                await asyncio.to_thread(Path(f).unlink, missing_ok=True)
        if old:
            async with self.ctx.store.transaction() as tx:
                await tx.executemany("DELETE FROM siteops_reports WHERE id = ?",
                                     [(r[0],) for r in old])
                await tx.executemany("DELETE FROM siteops_report_deliveries WHERE "
                                     "report_id = ?", [(r[0],) for r in old])
            log.info("reports: %d past retention deleted", len(old))
        return len(old)

    async def list(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.ctx.store.query(
            "SELECT id, name, period, scheduled, start_ts, end_ts, files, generated_ts FROM "
            "siteops_reports WHERE (? IS NULL OR name = ?) ORDER BY generated_ts DESC LIMIT ?",
            (name, name, limit))
        ids = [r[0] for r in rows]
        hooks = await self.webhooks.state(ids)
        queued = await delivery.uplink_pending(self.comp, ids)
        return [{"report_id": r[0], "name": r[1], "period": r[2], "scheduled": bool(r[3]),
                 "period_start_ts": r[4], "period_end_ts": r[5], "files": json.loads(r[6]),
                 "generated_ts": r[7],
                 "delivery": {"uplink_queued": queued.get(r[0]),
                              "webhook": hooks.get(r[0], [])}} for r in rows]


def _write_all(files: list[tuple[Path, bytes]]) -> None:
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def to_csv(data: dict[str, list[list[Any]]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "subject", "metric", "value", "unit"])
    for section, rows in data.items():
        for row in rows:
            w.writerow([section, *row])
    return buf.getvalue().encode()


def svg_bars(rows: list[tuple[str, float]], unit: str) -> str:
    """A horizontal bar chart, one bar per row."""
    import html  # here: html.entities is ~0.3 MB that a site without reports never needs

    if not rows:
        return "<p>no data</p>"
    top = max(v for _, v in rows) or 1.0
    h = 22 * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{h}" '
             'role="img">']
    for i, (label, v) in enumerate(rows):
        y = 5 + 22 * i
        wid = max(int(400 * v / top), 1)
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label)}</text>'
                     f'<rect x="150" y="{y}" width="{wid}" height="16" fill="#3a7"/>'
                     f'<text x="{155 + wid}" y="{y + 14}" font-size="12">{v:g} '
                     f'{html.escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: ReportDef, key: str, data: dict[str, list[list[Any]]]) -> bytes:
    import html  # here, not at the top: see svg_bars

    title = html.escape(f"{report.name} {key}")
    chart = svg_bars([(str(r[0]), float(r[2])) for r in data.get("energy", [])
                      if r[0] != "site" and r[1] == "energy"], "kWh")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
           f"<body><h1>{title}</h1><h2>Energy</h2>{chart}"]
    for section, rows in data.items():
        out.append(f"<h2>{html.escape(section)}</h2><table border='1'><tr><th>subject</th>"
                   "<th>metric</th><th>value</th><th>unit</th></tr>")
        out.extend("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out).encode()
