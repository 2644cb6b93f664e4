"""Payload validation against the official OCPP JSON schemas, with the CALLERROR the spec names.

The ``ocpp`` library validates too, but it answers most failures with FormatViolation (an enum
value out of range, a number below its minimum, ...), a missing field with ProtocolError, and
puts a jsonschema dump of ~800 bytes in the details. OCPP-J (1.6 section 4.2.3, 2.0.1 part 4
section 4.3) names a code per kind of failure, so when the library refuses a CALL the session
validates it again here and answers with that code and a one-line cause (only then: a
MeterValues payload costs ~0.5 ms to validate, which the library does in a worker thread):

==============================================  ==============================================
jsonschema failure (``error.validator``)        CALLERROR (1.6 spelling / 2.0.1 spelling)
==============================================  ==============================================
type                                            TypeConstraintViolation
required, minItems, maxItems                    OccurenceConstraintViolation /
                                                OccurrenceConstraintViolation
enum, pattern, format, minLength, maxLength,    PropertyConstraintViolation
minimum, maximum, exclusiveMinimum,
exclusiveMaximum, multipleOf, uniqueItems
additionalProperties, additionalItems,          FormationViolation / FormatViolation (the
minProperties, maxProperties, dependencies      payload does not have the PDU's structure)
anything else (anyOf, oneOf, not, ...)          FormationViolation / FormatViolation
==============================================  ==============================================

The same check explains a refusal of the gateway's own outbound CALLs (the library validates
them before sending), so a command argument the charger's version cannot carry is answered
``bad_arguments`` instead of being reported as the charger's error.
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError, best_match
from ocpp.messages import MessageType, get_validator

#: Causes are cut to this length: enough to name the field and the rule, never a dump.
MAX_CAUSE = 160

_TYPE = "TypeConstraintViolation"
_OCCURRENCE = "OccurrenceConstraintViolation"
_PROPERTY = "PropertyConstraintViolation"
_FORMAT = "FormatViolation"

#: jsonschema keyword -> CALLERROR code (2.0.1 spelling; ``spelled`` gives the 1.6 one).
CODES: dict[str, str] = {
    "type": _TYPE,
    "required": _OCCURRENCE,
    "minItems": _OCCURRENCE,
    "maxItems": _OCCURRENCE,
    "enum": _PROPERTY,
    "pattern": _PROPERTY,
    "format": _PROPERTY,
    "minLength": _PROPERTY,
    "maxLength": _PROPERTY,
    "minimum": _PROPERTY,
    "maximum": _PROPERTY,
    "exclusiveMinimum": _PROPERTY,
    "exclusiveMaximum": _PROPERTY,
    "multipleOf": _PROPERTY,
    "uniqueItems": _PROPERTY,
    "additionalProperties": _FORMAT,
    "additionalItems": _FORMAT,
    "minProperties": _FORMAT,
    "maxProperties": _FORMAT,
    "dependencies": _FORMAT,
}

_SPELLING = {
    "1.6": {
        "FormatViolation": "FormationViolation",
        "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
        "MessageTypeNotSupported": "ProtocolError",
        "RpcFrameworkError": "FormationViolation",
    },
    "2.0.1": {
        "FormationViolation": "FormatViolation",
        "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
    },
}

_DESCRIPTIONS = {
    _TYPE: "A field has the wrong type",
    _OCCURRENCE: "A field occurs too few or too many times",
    _PROPERTY: "A field has a value outside its allowed range",
    _FORMAT: "The payload does not have the structure of the action",
}

#: 1.6 schemas with decimals (multipleOf 0.1): the library parses them with Decimal too.
_DECIMAL_ACTIONS = {"SetChargingProfile", "RemoteStartTransaction"}


def spelled(code: str, version: str) -> str:
    """The version's own spelling of a CALLERROR code (1.6 has FormationViolation, ...)."""
    return _SPELLING.get(version, {}).get(code, code)


@dataclass(frozen=True)
class SchemaFailure:
    """Why a payload fails its schema: the code for the version, a field and a short cause."""

    code: str
    description: str
    field: str
    cause: str
    keyword: str


def validator(action: str, version: str) -> Draft4Validator:
    """The library's own (cached) validator of a CALL payload, so both agree on the schema."""
    if version == "1.6" and action in _DECIMAL_ACTIONS:
        return get_validator(MessageType.Call, action, version, parse_float=decimal.Decimal)
    return get_validator(MessageType.Call, action, version)


def check_call(action: str, version: str, payload: dict[str, Any]) -> SchemaFailure | None:
    """None if the camelCase ``payload`` of ``action`` is valid for ``version``."""
    try:
        schema = validator(action, version)
    except (OSError, ValueError):
        return None  # no schema for it: routing answers NotImplemented/NotSupported
    if version == "1.6" and action in _DECIMAL_ACTIONS:
        payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    error = best_match(schema.iter_errors(payload))
    if error is None:
        return None
    return describe(error, version)


def describe(error: ValidationError, version: str) -> SchemaFailure:
    keyword = str(error.validator)
    code = spelled(CODES.get(keyword, _FORMAT), version)
    field = "/".join(str(p) for p in error.absolute_path) or "payload"
    cause = _cause(keyword, field, error)
    if len(cause) > MAX_CAUSE:
        cause = cause[: MAX_CAUSE - 3] + "..."
    return SchemaFailure(code, _DESCRIPTIONS[CODES.get(keyword, _FORMAT)], field, cause, keyword)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cause(keyword: str, field: str, error: ValidationError) -> str:
    instance: Any = error.instance
    rule: Any = error.validator_value
    if keyword == "type":
        return f"{field} must be of type {rule}, got {type(instance).__name__} {_short(instance)}"
    if keyword == "required" and isinstance(instance, dict):
        missing = [name for name in rule if name not in instance]
        where = "" if field == "payload" else f" in {field}"
        return f"required field {', '.join(missing)} is missing{where}"
    if keyword in ("minItems", "maxItems", "minLength", "maxLength") and hasattr(
        instance, "__len__"
    ):
        bound = "at least" if keyword.startswith("min") else "at most"
        unit = "items" if keyword.endswith("Items") else "characters"
        return f"{field} has {len(instance)} {unit}; {bound} {rule} allowed"
    if keyword == "enum":
        allowed = ", ".join(str(v) for v in list(rule)[:6]) + (", ..." if len(rule) > 6 else "")
        return f"{field} is {_short(instance)}, not one of {allowed}"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set((error.schema or {}).get("properties", {}))  # type: ignore[union-attr]
        extra = sorted(str(k) for k in instance if k not in known)
        where = "" if field == "payload" else f" in {field}"
        return f"unknown field {', '.join(extra)}{where}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                   "pattern", "format", "uniqueItems"):
        return f"{field} is {_short(instance)}; violates {keyword} {_short(rule)}"
    return f"{field}: fails {keyword}"
