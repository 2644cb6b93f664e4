"""Translation between OPC-UA data values and fieldgate samples, in both directions.

One place decides how a status code becomes a quality, which timestamp a sample carries, which
OPC-UA values fit the sample value type, and how a written Python value is coerced to the
node's own data type (so writing ``5`` to a Double node does not fail with BadTypeMismatch).
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

from drivers.opcua.config import TimestampSource
from gateway.model import Quality, Value

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOATS = (ua.VariantType.Float, ua.VariantType.Double)


class CoercionError(ValueError):
    """A written value does not fit the node's data type."""


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC-UA status severity (top two bits) to sample quality."""
    if status is None:
        return Quality.GOOD
    code = status.value
    severity = code >> 30
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def _ms(ts: datetime) -> int:
    if ts.tzinfo is None:  # asyncua decodes UTC without tzinfo
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def timestamp_of(dv: ua.DataValue, source: TimestampSource, now_ms: int) -> int:
    """Pick the sample timestamp: source, then server, then the gateway clock."""
    if source is TimestampSource.SOURCE and dv.SourceTimestamp is not None:
        return _ms(dv.SourceTimestamp)
    if source is not TimestampSource.GATEWAY and dv.ServerTimestamp is not None:
        return _ms(dv.ServerTimestamp)
    return now_ms


def value_of(raw: Any) -> tuple[Value, bool]:
    """An OPC-UA variant value as a sample value. Returns ``(value, ok)``; ``ok`` is False for
    values that have no sample representation (arrays, structures), which become BAD samples."""
    if raw is None or isinstance(raw, bool | str):
        return raw, True
    if isinstance(raw, enum.Enum):
        raw = raw.value
    if isinstance(raw, int):
        return int(raw), True
    if isinstance(raw, float):
        return (raw, True) if math.isfinite(raw) else (None, False)
    if isinstance(raw, ua.LocalizedText):
        return raw.Text, True
    if isinstance(raw, datetime):
        return _ms(raw), True
    if isinstance(raw, ua.NodeId | ua.QualifiedName):
        return raw.to_string(), True
    return None, False


def coerce_for_write(value: Value, vtype: ua.VariantType) -> ua.Variant:
    """Turn a command value into a variant of the node's own type, or raise CoercionError."""
    if value is None:
        raise CoercionError("cannot write null")
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool):
            return ua.Variant(value, vtype)
        if isinstance(value, int | float) and value in (0, 1):
            return ua.Variant(bool(value), vtype)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return ua.Variant(value.lower() == "true", vtype)
        raise CoercionError(f"{value!r} is not a boolean")
    if vtype in _FLOATS:
        if isinstance(value, bool):
            raise CoercionError(f"{value!r} is a boolean, the node holds {vtype.name}")
        try:
            number = float(value)
        except ValueError:
            raise CoercionError(f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise CoercionError(f"{value!r} is not a finite number")
        return ua.Variant(number, vtype)
    if vtype in _INT_RANGES:
        return ua.Variant(_as_int(value, vtype), vtype)
    if vtype is ua.VariantType.String:
        return ua.Variant(str(value), vtype)
    raise CoercionError(f"writing to {vtype.name} nodes is not supported")


def _as_int(value: Value, vtype: ua.VariantType) -> int:
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value, 0)
        except ValueError:
            raise CoercionError(f"{value!r} is not an integer") from None
    else:
        raise CoercionError(f"{value!r} is not an integer ({vtype.name} node)")
    low, high = _INT_RANGES[vtype]
    if not low <= number <= high:
        raise CoercionError(f"{number} is outside the {vtype.name} range {low}..{high}")
    return number
