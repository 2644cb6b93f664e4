"""Config models of a Modbus device and its points.

A device either lists its points, names a register-map profile (``profile: eastron-sdm630``,
a YAML file under ``config/profiles/``), or both (listed points override profile points of the
same name). ``profile: sunspec`` is special: the map is discovered on the device at run time.
The enum and bitmask maps of status and fault-code points live on :class:`PointConfig`, so the
alarm rules read them from the same model the driver uses.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from drivers.base import DeviceConfig
from drivers.modbus import datatypes as dt
from drivers.modbus.datatypes import Function, Order
from gateway.config.base import Problems, StrictModel

SUNSPEC = "sunspec"
Address = Annotated[int, Field(ge=0, le=65535)]


#: The enum and bitmask of a point that has none: one read-only mapping shared by every
#: point (two empty dicts per point were 128 bytes of each configured point).
NO_CODES: Mapping[int, str] = MappingProxyType({})


def _no_codes() -> Mapping[int, str]:
    return NO_CODES


# One point of a device: a frozen dataclass with slots, not a model, because a big site has
# tens of thousands of them (about 150 bytes each, against 700 for a model, and a fraction of
# the CPU to validate). It validates like the config models (unknown keys are errors), and
# its errors are located and worded as theirs (gateway.config.loader maps the dataclass's
# error types to the models' ones). No docstring: it would become the schema's description.
@dataclass(config=ConfigDict(extra="forbid"), frozen=True, slots=True)
class PointConfig:

    name: str = Field(min_length=1, max_length=64, description="Point name in samples.")
    function: Function = Field(Function.HOLDING, description="Modbus table of the point.")
    address: Address = Field(description="Zero-based protocol address (not 4xxxx numbering).")
    type: str = Field("uint16", description=f"Data type: {', '.join(dt.DATA_TYPES)}.")
    order: Order = Field(Order.ABCD, description="Byte/word order of multi-byte values.")
    bit: int | None = Field(None, ge=0, le=15, description="Bit of a register for type bool.")
    length: int | None = Field(None, ge=1, description="Registers of a string point.")
    scale: float = Field(1.0, description="value = raw * scale + offset.")
    offset: float = Field(0.0, description="Added after scaling.")
    decimals: int | None = Field(
        None, ge=0, le=15,
        description="Round the value to this many decimals (0: an integer). Default: an "
        "integer register keeps the decimals of its scale and offset (scale 0.1: one), a "
        "float register is not rounded.",
    )
    unit: str | None = Field(None, description="Engineering unit, for documentation and UIs.")
    interval: float | None = Field(None, gt=0, description="Slower poll interval, seconds.")
    writable: bool = Field(False, description="Allow Driver.write to this point.")
    readback: bool = Field(False, description="Read the point back after a write.")
    enum: Mapping[int, str] = Field(default_factory=_no_codes, json_schema_extra={"default": {}},
                                    description="Code -> text for a status register.")
    bitmask: Mapping[int, str] = Field(default_factory=_no_codes,
                                       json_schema_extra={"default": {}},
                                       description="Bit number -> fault text.")

    @model_validator(mode="after")
    def _check_type(self) -> PointConfig:
        scaled = self.scale != 1.0 or self.offset != 0.0
        shape = (self.type, self.function, self.order, self.bit, self.length, scaled,
                 self.writable, self.readback, bool(self.enum), bool(self.bitmask),
                 self.decimals is not None)
        if shape not in _GOOD_SHAPES:  # most points of a site share a few shapes
            _check_shape(*shape)
            if len(_GOOD_SHAPES) < 4096:
                _GOOD_SHAPES.add(shape)
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) the point occupies."""
        if self.function.is_bit:
            return 1
        return _REGISTERS.get(self.type) or dt.register_count(self.type, self.length)

    def describe_code(self, code: int) -> list[str]:
        """Texts for a raw status/fault code: the enum entry, or every set bitmask bit."""
        if self.enum:
            return [self.enum.get(code, f"unknown code {code}")]
        return [text for bit, text in sorted(self.bitmask.items()) if code >> bit & 1]


#: Registers of each fixed-size type (a string's come from its length).
_REGISTERS = {name: spec.registers for name, spec in dt.DATA_TYPES.items() if spec.registers}

#: The point shapes (the fields the checks read) already found valid.
_GOOD_SHAPES: set[tuple[object, ...]] = set()


def _check_shape(type_name: str, function: Function, order: Order, bit: int | None,
                 length: int | None, scaled: bool, writable: bool, readback: bool,
                 enum: bool, bitmask: bool, rounded: bool) -> None:
    dt.validate(type_name, function, order=order, bit=bit, length=length, scaled=scaled)
    if rounded and (not dt.DATA_TYPES[type_name].numeric or function.is_bit):
        raise ValueError(f"'decimals' rounds numbers; type {type_name!r} is not one")
    if writable and not function.writable:
        raise ValueError(f"{function.value} points are read-only; drop 'writable'")
    if readback and not writable:
        raise ValueError("'readback' needs 'writable: true'")
    if enum and type_name not in ("int16", "uint16", "int32", "uint32"):
        raise ValueError("'enum' maps integer status codes; use an integer type")
    if bitmask and type_name not in ("uint16", "uint32", "uint64"):
        raise ValueError("'bitmask' needs an unsigned integer type")


#: The key of the validation context's table where equal point maps are shared (one load).
SHARED = "shared"
_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(PointConfig)
                                 if f.name not in ("enum", "bitmask")))


def share_points(points: list[PointConfig], shared: dict[object, object]) -> list[PointConfig]:
    """``points``, or the equal points of a device already in ``shared`` (then put there).

    Points are frozen, so devices of one model listing the same map (200 meters of 125
    points) keep one set of point objects between them, not one each: about 150 bytes per
    point per device. The table holds one entry per distinct map (not per point), so a site
    whose devices all differ pays nothing but a hash per device; the loader gives one table
    per load, so a reload does not keep the old file's points alive.
    """
    try:
        key = ("modbus.points", len(points), hash(tuple(map(_FIELDS, points))))
    except TypeError:
        return points
    found = shared.setdefault(key, points)
    if found is points or not isinstance(found, list) or found != points:
        return points  # the first of its map, or a hash collision (not equal: kept as is)
    return found


#: Validates points outside a device (profiles, tools).
POINT = TypeAdapter(PointConfig)


class AddressRange(StrictModel):
    """Addresses the device refuses to read (a read spanning them raises an exception)."""

    function: Function | None = Field(None, description="Table; omit for every table.")
    start: Address
    end: Address = Field(description="Inclusive.")

    @model_validator(mode="after")
    def _ordered(self) -> AddressRange:
        if self.end < self.start:
            raise ValueError(f"range end {self.end} is before start {self.start}")
        return self


class SerialSettings(StrictModel):
    port: str = Field(description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    inter_frame_delay: float = Field(
        0.0, ge=0, description="Extra silence between frames, seconds (slow RS-485 devices)."
    )


class ModbusDeviceConfig(DeviceConfig):
    type: Literal["modbus"] = "modbus"
    transport: Literal["tcp", "rtu", "rtu-over-tcp"] = Field(
        "tcp", description="tcp, rtu on a serial port, or RTU frames over TCP (serial gateway)."
    )
    host: str | None = Field(None, description="TCP host (tcp and rtu-over-tcp).")
    port: int = Field(502, ge=1, le=65535, description="TCP port.")
    serial: SerialSettings | None = Field(None, description="Line settings for transport rtu.")
    unit: int = Field(1, ge=0, le=255, description="Unit id (slave address) on the bus.")
    interval: float = Field(1.0, gt=0, description="Poll interval, seconds.")
    timeout: float = Field(1.0, gt=0, description="Reply timeout per request, seconds.")
    retries: int = Field(0, ge=0, le=5, description="Retries of a failed request.")
    offline_after: int = Field(3, ge=1, description="Consecutive failed cycles -> offline.")
    reconnect_max: float = Field(30.0, gt=0, description="Backoff cap while offline, seconds.")
    max_gap: int = Field(10, ge=0, description="Unused registers a merged read may bridge.")
    max_registers: int = Field(dt.MAX_REGISTERS, ge=1, le=dt.MAX_REGISTERS)
    max_bits: int = Field(dt.MAX_BITS, ge=1, le=dt.MAX_BITS)
    unreadable: list[AddressRange] = Field([], description="Never read across these.")
    hole_reprobe: float = Field(
        3600.0, gt=0,
        description="Seconds between re-reads of an address the device refused (a learned "
        "hole), in case its firmware changed.",
    )
    profile: str | None = Field(None, description="Register map under config/profiles/.")
    points: list[PointConfig] = []
    simulate: bool = Field(False, description="Also run a simulator serving this device.")
    _profile_points: list[PointConfig] = PrivateAttr(default_factory=list)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value != SUNSPEC:
            from drivers.modbus.profiles import profile_path

            profile_path(value)  # raises with the list of known profiles
        return value

    @model_validator(mode="after")
    def _check_device(self, info: ValidationInfo) -> ModbusDeviceConfig:
        if self.transport == "rtu":
            if self.serial is None:
                raise ValueError("transport rtu needs 'serial' (port, baudrate, ...)")
        elif self.host is None:
            raise ValueError(f"transport {self.transport} needs 'host'")
        if self.simulate and self.transport == "rtu":
            raise ValueError("'simulate' serves TCP on loopback; use transport tcp")
        if self.profile and self.profile != SUNSPEC:
            from drivers.modbus.profiles import load_profile

            self._profile_points = load_profile(self.profile).points
        if not self.profile and not self.points:
            raise ValueError("a modbus device needs 'points' or a 'profile'")
        # Every point problem at once, each at the point's own line (a profile's at 'profile').
        problems = Problems()
        seen: set[str] = set()
        listed = {p.name: ("points", i) for i, p in enumerate(self.points)}
        for i, point in enumerate(self.points):
            if point.name in seen:
                problems.add(("points", i, "name"), f"point {point.name!r} is listed twice")
            seen.add(point.name)
        for point in self.all_points().values():
            at: tuple[str | int, ...] = listed.get(point.name, ("profile",))
            limit = self.max_bits if point.function.is_bit else self.max_registers
            if point.count > limit:
                problems.add(at, f"point {point.name!r} is longer than one read ({limit})")
            for rng in self.unreadable:
                if rng.function in (None, point.function) and (
                    point.address <= rng.end and rng.start < point.address + point.count
                ):
                    problems.add(at, f"point {point.name!r} lies in an unreadable range")
        problems.raise_any(self)
        shared = info.context.get(SHARED) if isinstance(info.context, dict) else None
        if isinstance(shared, dict):
            self.points[:] = share_points(self.points, shared)  # its own list, shared points
        return self

    def all_points(self) -> dict[str, PointConfig]:
        """Profile points overridden by listed points of the same name."""
        points = {p.name: p for p in self._profile_points}
        points.update({p.name: p for p in self.points})
        return points

    @property
    def bus_key(self) -> str:
        """Devices with the same key share one connection and one poll loop."""
        if self.transport == "rtu":
            assert self.serial is not None
            return f"rtu://{self.serial.port}"
        scheme = "tcp" if self.transport == "tcp" else "rtu+tcp"
        return f"{scheme}://{self.host}:{self.port}"
