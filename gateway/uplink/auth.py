"""Who may command the gateway over MQTT: an allow-list, and optionally signed commands.

Broker ACLs are the first line of defence (docs/fleet.md); this is the gateway's own. Every
request on ``cmd/<name>`` passes :class:`CommandPolicy` before the command registry:

- ``uplink.commands.allow`` lists the command names (fnmatch patterns) that MQTT may run.
  ``@read`` stands for every read-only command (``ping``, ``*.stats``, ``alarm.list``, ...).
  The default is ``["@read"]``: writes, OCPP control and ``reload`` must be allowed by name.
- With ``uplink.commands.signing``, a request must be signed with HMAC-SHA256 under a
  per-gateway key (from the environment, ``key: ${FIELDGATE_COMMAND_KEY}``). The payload is
  then ``{"signed": "<JSON text>", "sig": "<hex digest of the UTF-8 bytes of signed>"}`` and
  the signed text is ``{"id", "gw", "command", "ts", "nonce", "args"}``: the gateway id and
  command name must match the topic's, ``ts`` (ms since the epoch) must lie within
  ``window`` seconds of the gateway's clock, and a nonce is accepted once within the window
  (remembered across restarts). docs/wire-format.md has a signing example for the cloud.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, SecretStr

from gateway.commands import Command
from gateway.config.base import StrictModel
from gateway.safejson import BadJson, loads

READ_ONLY_GROUP = "@read"


class SigningSection(StrictModel):
    key: SecretStr = Field(
        min_length=16,
        description="The per-gateway HMAC-SHA256 key; write ${FIELDGATE_COMMAND_KEY} and keep "
        "the value in the environment (/etc/fieldgate/env). Never logged.")
    required: bool = Field(
        True, description="Refuse unsigned commands. false: accept unsigned ones too (while "
        "a fleet migrates); signed ones are still verified.")
    window: Annotated[float, Field(gt=0, le=86_400)] = Field(
        300.0, description="Seconds a signed command's ts may differ from the gateway's clock.")


class CommandsSection(StrictModel):
    allow: list[str] = Field(
        [READ_ONLY_GROUP],
        description="Commands MQTT may run: names or fnmatch patterns (`ocpp.*`); `@read` is "
        "every read-only command; `*` is all. Default: read-only commands only.")
    signing: SigningSection | None = Field(
        None, description="Require HMAC-SHA256 signed commands (see docs/wire-format.md).")


class Refused(Exception):
    """A request the policy turns away; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class CommandPolicy:
    def __init__(self, section: CommandsSection, *, gateway_id: str,
                 lookup: Callable[[str], Command | None], now_ms: Callable[[], int]) -> None:
        self.section = section
        self.gateway_id = gateway_id
        self._lookup = lookup
        self._now_ms = now_ms
        #: nonce -> ts (ms) of signed commands accepted within the window.
        self.nonces: dict[str, int] = {}

    @property
    def signing(self) -> SigningSection | None:
        return self.section.signing

    def check_allowed(self, name: str, request_id: str | None) -> None:
        command = self._lookup(name)
        if command is None:
            return  # the registry answers unknown_command: nothing runs
        for pattern in self.section.allow:
            if pattern == READ_ONLY_GROUP:
                if command.read_only:
                    return
            elif fnmatch.fnmatchcase(name, pattern):
                return
        raise Refused("forbidden", f"command {name!r} is not allowed over MQTT on this gateway "
                      "(uplink.commands.allow)", request_id)

    def unwrap(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """The request to run: a signed one verified and unpacked, an unsigned one as it came
        (or refused when signing is required)."""
        signing = self.section.signing
        if signing is None:
            return request
        if "signed" not in request and "sig" not in request:
            if signing.required:
                rid = request.get("id")
                raise Refused("unauthorized", "this gateway accepts signed commands only "
                              "(uplink.commands.signing)", rid if isinstance(rid, str) else None)
            return request
        signed, sig = request.get("signed"), request.get("sig")
        if not isinstance(signed, str) or not isinstance(sig, str):
            raise Refused("unauthorized", "a signed command has 'signed' (a JSON string) and "
                          "'sig' (its hex HMAC-SHA256)")
        try:
            inner = loads(signed)
        except BadJson as err:
            raise Refused("unauthorized", f"the signed text is not JSON: {err}") from None
        rid = inner.get("id") if isinstance(inner, dict) else None
        rid = rid if isinstance(rid, str) else None
        expected = hmac.new(signing.key.get_secret_value().encode(), signed.encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise Refused("unauthorized", "bad signature", rid)
        if not isinstance(inner, dict):
            raise Refused("bad_request", "the signed text must be a JSON object")
        if inner.get("gw") != self.gateway_id or inner.get("command") != name:
            raise Refused("unauthorized", "the signed command was made for another gateway or "
                          "command", rid)
        ts, nonce = inner.get("ts"), inner.get("nonce")
        if not isinstance(ts, int) or not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
            raise Refused("unauthorized", "a signed command needs 'ts' (ms since the epoch) and "
                          "'nonce' (8..128 characters)", rid)
        now = self._now_ms()
        window_ms = int(signing.window * 1000)
        if abs(now - ts) > window_ms:
            raise Refused("expired", f"the command's ts is {abs(now - ts) / 1000:.0f} s away "
                          f"from the gateway's clock (window {signing.window:g} s)", rid)
        self._prune(now - window_ms)
        if nonce in self.nonces:
            raise Refused("replayed", "this nonce was used already; sign every command anew",
                          rid)
        self.nonces[nonce] = ts
        return {"id": rid, "args": inner.get("args", {})}

    def _prune(self, oldest_ms: int) -> None:
        stale = [n for n, ts in self.nonces.items() if ts < oldest_ms]
        for nonce in stale:
            del self.nonces[nonce]

    def restore_nonces(self, saved: Any) -> None:
        if isinstance(saved, dict):
            self.nonces = {str(k): int(v) for k, v in saved.items() if isinstance(v, int)}


def sign(key: bytes, *, gateway: str, command: str, request_id: str, args: Any,
         ts_ms: int, nonce: str) -> bytes:
    """The cloud side, for tests and as the reference: a signed request payload."""
    import json

    signed = json.dumps({"id": request_id, "gw": gateway, "command": command, "ts": ts_ms,
                         "nonce": nonce, "args": args}, separators=(",", ":"))
    sig = hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signed": signed, "sig": sig}).encode()
