"""Logging to stderr (journald picks it up), as text or as JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

from gateway.logring import ring


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        task = getattr(record, "taskName", None)
        if task:
            entry["task"] = task
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    ring()  # the last lines in memory for logs.tail
    root.setLevel(level)
    for noisy in ("aiosqlite", "asyncua", "websockets", "amqtt", "transitions", "ocpp",
                  "drivers.ocpp.simulator"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # The Modbus driver translates pymodbus errors at its boundary and logs them with the
    # device name; pymodbus's own ERROR lines about late replies would only repeat them.
    logging.getLogger("pymodbus").setLevel(
        logging.DEBUG if root.level <= logging.DEBUG else logging.CRITICAL)
