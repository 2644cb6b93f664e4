"""Value mapping both ways: status severity to quality, variants to sample values, command
values to the node's data type. Table-driven, plus one real server for a garbage value."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua
from opcua_helpers import device, running

from drivers.opcua.convert import CoercionError, coerce_for_write, quality_of, value_of
from drivers.opcua.simulator import InverterSimulator
from gateway.model import Quality

V = ua.VariantType


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.GoodClamped, Quality.GOOD),
        (ua.StatusCodes.UncertainSensorNotAccurate, Quality.UNCERTAIN),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.BadCommunicationError, Quality.BAD),
        (ua.StatusCodes.BadOutOfService, Quality.BAD),
    ],
)
def test_quality_from_severity(code: int, quality: Quality) -> None:
    assert quality_of(ua.StatusCode(code)) is quality  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1.5, (1.5, True)),
        (7, (7, True)),
        (True, (True, True)),
        ("run", ("run", True)),
        (ua.LocalizedText("Auto"), ("Auto", True)),
        (datetime(2024, 1, 1, tzinfo=UTC), (1_704_067_200_000, True)),
        (float("nan"), (None, False)),
        ([1, 2, 3], (None, False)),
        (b"\x00\x01", (None, False)),
    ],
)
def test_value_of(raw: Any, expected: tuple[Any, bool]) -> None:
    assert value_of(raw) == expected


@pytest.mark.parametrize(
    ("value", "vtype", "expected"),
    [
        (5, V.Double, 5.0),
        (True, V.Boolean, True),
        (1, V.Boolean, True),
        ("false", V.Boolean, False),
        (3.0, V.Int16, 3),
        ("0x10", V.UInt16, 16),
        (65535, V.UInt16, 65535),
        (2.5, V.Float, 2.5),
        (12, V.String, "12"),
    ],
)
def test_coerce_for_write(value: Any, vtype: ua.VariantType, expected: Any) -> None:
    variant = coerce_for_write(value, vtype)
    assert variant.VariantType is vtype
    assert variant.Value == expected and type(variant.Value) is type(expected)


@pytest.mark.parametrize(
    ("value", "vtype", "message"),
    [
        (None, V.Double, "cannot write null"),
        (True, V.Double, "is a boolean"),
        ("abc", V.Double, "not a number"),
        (math.inf, V.Float, "not a finite number"),
        (-1, V.UInt32, "outside the UInt32 range"),
        (70000, V.Int16, "outside the Int16 range"),
        (1.5, V.Int32, "not an integer"),
        (2, V.Boolean, "not a boolean"),
        (1, V.ByteString, "not supported"),
    ],
)
def test_coerce_refuses(value: Any, vtype: ua.VariantType, message: str) -> None:
    with pytest.raises(CoercionError, match=message):
        coerce_for_write(value, vtype)


@pytest.mark.asyncio(loop_scope="module")
async def test_garbage_value_from_server_is_bad(sim: InverterSimulator) -> None:
    """An array where a scalar point is expected has no sample form: BAD, and nothing stops."""
    node = await sim.server.nodes.objects.add_variable(
        ua.NodeId.from_string("ns=2;s=Test.Array"), "2:TestArray", [1, 2, 3], V.Int32
    )
    assert node is not None
    cfg = device(
        sim.url,
        [
            {
                "mode": "polling",
                "interval": 0.2,
                "points": [
                    {"name": "arr", "node": "ns=2;s=Test.Array"},
                    {"name": "soc", "node": "ns=2;s=Inverter.SoC"},
                ],
            }
        ],
    )
    async with running(cfg) as (_, ctx):
        await ctx.wait_for(lambda c: len(c.batches) >= 2, 10)
    arr = [s for s in ctx.samples if s.point == "arr"]
    assert arr and all(s.quality is Quality.BAD and s.value is None for s in arr)
    assert all(s.quality is Quality.GOOD for s in ctx.samples if s.point == "soc")
