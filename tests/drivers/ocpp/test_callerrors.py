"""Every kind of schema failure gets the CALLERROR code OCPP-J names for it, for 1.6 and 2.0.1.

The live table sends each bad payload from the ``ocpp`` library's own charge point over a real
websocket to the running central system; the library turns our CALLERROR back into its
exception class, so a code it does not know would fail here too. The unit table covers the
jsonschema keywords that no inbound action of either version can trigger (minimum, pattern,
...) with the same validator class the library uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match
from ocpp.exceptions import OCPPError
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as c16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as c201

from drivers.ocpp.schema import CODES, MAX_CAUSE, describe
from drivers.ocpp.security import basic_auth_header
from tests.drivers.ocpp.conftest import PASSWORD, charger, server

OCC16, OCC201 = "OccurenceConstraintViolation", "OccurrenceConstraintViolation"
PROP, TYPE = "PropertyConstraintViolation", "TypeConstraintViolation"
TOKEN = {"idToken": "T1", "type": "ISO14443"}
HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b",
        "serialNumber": "c", "responderURL": "http://ocsp"}

# (jsonschema keyword, action, camelCase payload, code, field named in the cause)
TABLE_16: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("type", "Authorize", {"idTag": 12}, TYPE, "idTag"),
    ("type", "StatusNotification", {"connectorId": "1", "errorCode": "NoError",
                                    "status": "Available"}, TYPE, "connectorId"),
    ("required", "Authorize", {}, OCC16, "idTag"),
    ("required", "MeterValues", {"connectorId": 1, "meterValue": [
        {"sampledValue": [{"value": "1"}]}]}, OCC16, "timestamp"),
    ("minItems", "MeterValues", {"connectorId": 1, "meterValue": []}, OCC16, "meterValue"),
    ("enum", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                    "status": "Bogus"}, PROP, "status"),
    ("enum", "StopTransaction", {"meterStop": 1, "timestamp": "2024-01-01T00:00:00Z",
                                 "transactionId": 1, "reason": "Whatever"}, PROP, "reason"),
    ("maxLength", "Authorize", {"idTag": "x" * 21}, PROP, "idTag"),
    ("additionalProperties", "Heartbeat", {"pad": "x"}, "FormationViolation", "pad"),
]
TABLE_201: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("type", "Authorize", {"idToken": {"idToken": 12, "type": "ISO14443"}}, TYPE,
     "idToken/idToken"),
    ("required", "Authorize", {}, OCC201, "idToken"),
    ("required", "Authorize", {"idToken": {"idToken": "T1"}}, OCC201, "type"),
    ("minItems", "MeterValues", {"evseId": 1, "meterValue": []}, OCC201, "meterValue"),
    ("maxItems", "Authorize", {"idToken": TOKEN, "iso15118CertificateHashData": [HASH] * 5},
     OCC201, "iso15118CertificateHashData"),
    ("enum", "StatusNotification", {"timestamp": "2024-01-01T00:00:00Z",
                                    "connectorStatus": "Bogus", "evseId": 1,
                                    "connectorId": 1}, PROP, "connectorStatus"),
    ("maxLength", "Authorize", {"idToken": {"idToken": "x" * 37, "type": "ISO14443"}}, PROP,
     "idToken/idToken"),
    ("additionalProperties", "Heartbeat", {"pad": "x"}, "FormatViolation", "pad"),
]


def payload_of(action: str, camel: dict[str, Any]) -> Any:
    """A payload object the library's ``call()`` sends as it is (camelCase keys survive its
    snake->camel conversion unchanged)."""
    cls = dataclasses.make_dataclass(action, [(key, Any) for key in camel])
    return cls(**camel)


@contextlib.asynccontextmanager
async def library_charge_point(url: str, cid: str, version: str) -> AsyncIterator[Any]:
    ws = await websockets.connect(
        f"{url}/{cid}", subprotocols=[f"ocpp{version}"],  # type: ignore[list-item]
        additional_headers={"Authorization": basic_auth_header(cid, PASSWORD)})
    cp = (Cp16 if version == "1.6" else Cp201)(cid, ws, response_timeout=5)
    reader = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        await ws.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_every_schema_failure_kind_gets_the_spec_code(
    make_gateway: Any, version: str
) -> None:
    gw = await make_gateway([server(), charger("cp-strict")])
    table = TABLE_16 if version == "1.6" else TABLE_201
    async with library_charge_point(gw.url, "cp-strict", version) as cp:
        boot = (c16.BootNotification(charge_point_vendor="strict", charge_point_model="lib")
                if version == "1.6" else c201.BootNotification(
                    charging_station={"vendor_name": "strict", "model": "lib"},
                    reason="PowerUp"))
        assert (await cp.call(boot, suppress=False)).status == "Accepted"
        seen_kinds = set()
        for kind, action, camel, code, field in table:
            with pytest.raises(OCPPError) as info:
                await cp.call(payload_of(action, camel), suppress=False,
                              skip_schema_validation=True)
            err = info.value
            assert err.code == code, (version, kind, action, err)
            cause = err.details["cause"]
            assert field in cause and len(cause) <= MAX_CAUSE, (kind, cause)
            assert "Failed validating" not in cause and "{" not in cause  # no schema dump
            seen_kinds.add(kind)
            # the connection stays up and serves the next good call
            heartbeat = c16.Heartbeat() if version == "1.6" else c201.Heartbeat()
            assert (await cp.call(heartbeat, suppress=False)).current_time
    # every keyword the inbound schemas of the served actions can fail on is in the table
    assert seen_kinds >= {"type", "required", "minItems", "enum", "maxLength",
                          "additionalProperties"}


# (keyword, schema, instance): one failure of every jsonschema keyword Draft 4 checks
UNIT: list[tuple[str, dict[str, Any], Any]] = [
    ("type", {"type": "integer"}, "1"),
    ("required", {"required": ["a"]}, {}),
    ("minItems", {"minItems": 1}, []),
    ("maxItems", {"maxItems": 1}, [1, 2]),
    ("enum", {"enum": ["A", "B"]}, "C" * 500),
    ("pattern", {"pattern": "^[0-9]+$"}, "abc"),
    ("minLength", {"minLength": 2}, "a"),
    ("maxLength", {"maxLength": 2}, "abc"),
    ("minimum", {"minimum": 0}, -1),
    ("maximum", {"maximum": 10}, 11),
    ("multipleOf", {"multipleOf": 0.5}, 0.3),
    ("uniqueItems", {"uniqueItems": True}, [1, 1]),
    ("additionalProperties", {"properties": {}, "additionalProperties": False}, {"x": 1}),
    ("additionalItems", {"items": [{}], "additionalItems": False}, [1, 2]),
    ("minProperties", {"minProperties": 1}, {}),
    ("maxProperties", {"maxProperties": 0}, {"a": 1}),
    ("dependencies", {"dependencies": {"a": ["b"]}}, {"a": 1}),
]
EXPECTED = {  # keyword -> (1.6 code, 2.0.1 code)
    "type": (TYPE, TYPE),
    "required": (OCC16, OCC201), "minItems": (OCC16, OCC201), "maxItems": (OCC16, OCC201),
    **{k: (PROP, PROP) for k in ("enum", "pattern", "format", "minLength", "maxLength",
                                 "minimum", "maximum", "exclusiveMinimum",
                                 "exclusiveMaximum", "multipleOf", "uniqueItems")},
    **{k: ("FormationViolation", "FormatViolation")
       for k in ("additionalProperties", "additionalItems", "minProperties", "maxProperties",
                 "dependencies")},
}


@pytest.mark.parametrize("keyword,schema,instance", UNIT, ids=[u[0] for u in UNIT])
def test_every_jsonschema_keyword_maps_to_its_code(
    keyword: str, schema: dict[str, Any], instance: Any
) -> None:
    error = best_match(Draft4Validator(schema).iter_errors(instance))
    assert error is not None and error.validator == keyword
    for version, code in zip(("1.6", "2.0.1"), EXPECTED[keyword], strict=True):
        failure = describe(error, version)
        assert failure.code == code
        assert 0 < len(failure.cause) <= MAX_CAUSE


def test_the_code_table_and_the_expectations_agree() -> None:
    assert set(CODES) == set(EXPECTED)
