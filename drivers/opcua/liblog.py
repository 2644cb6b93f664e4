"""asyncua's log lines about routine events, routed down to DEBUG under our logger.

asyncua logs some events a gateway meets every day at ERROR or CRITICAL, with a traceback:
the publish loop failing while a server restarts ("Publish iteration crashed"), our trust
list refusing a server certificate ("create_session fault response"), a server
refusing the secure channel or the session ("Got error status from server", "Received an
error", a ServiceFault during the handshake), or a channel closed half-way ("Exception raised
while parsing message from server", usually ``NotEnoughData``). The device session already
reports each of these once, as a WARNING that names the device and says what to do, so the
library's line is only noise to monitoring that alerts on ERROR. It is kept at DEBUG (with
its traceback) on ``drivers.opcua.liblog`` for whoever needs it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: logger -> (message prefix, text the message must also contain) of the routine records.
#: Anything else passes untouched.
ROUTINE: dict[str, tuple[tuple[str, str], ...]] = {
    "asyncua.client.ua_session.UaSession": (("Publish iteration crashed", ""),),
    # our trust list refused the server's certificate: the session's WARNING names it
    "asyncua.client.client": (("create_session fault response", ""),),
    "asyncua.client.ua_client.UASocketProtocol": (
        ("Got error status from server", ""),
        ("Received an error", ""),
        ("Exception raised while parsing message from server", ""),
        ("ServiceFault (", "in response to CreateSessionRequest"),
        ("ServiceFault (", "in response to ActivateSessionRequest"),
    ),
}


class RouteDown(logging.Filter):
    def __init__(self, rules: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(message.startswith(p) and also in message for p, also in self.rules):
            return True
        log.debug("asyncua %s: %s", record.name, message, exc_info=record.exc_info)
        return False


def install() -> None:
    """Idempotent: add the filters once per process."""
    for name, rules in ROUTINE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RouteDown) for f in logger.filters):
            logger.addFilter(RouteDown(rules))
