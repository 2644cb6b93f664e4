"""SunSpec: find the model chain on the device and decode common models with scale factors.

A SunSpec device announces itself with the marker ``SunS`` (0x5375 0x6E53) at holding
register 40000, 0 or 50000, followed by a chain of models (``ID``, ``L``, then ``L`` registers)
ending with ID 0xFFFF. The point layout of each model comes from the JSON model definitions
that pysunspec2 ships, so we do not retype the SunSpec spreadsheets. Only the fixed group of a
model is decoded (no repeating groups); that covers models 1, 101-103, 201-204 and 701.

Values are scaled by their ``*_SF`` point (value * 10**sf, exact for integer registers: 230.1,
not 230.10000000000002). SunSpec's "not implemented" values (0x8000, 0xFFFF, NaN, ...) are not
emitted: the device does not have that measurement.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass
from importlib import resources
from typing import Any

from drivers.modbus import datatypes as dt
from drivers.modbus.bus import BadReply, Bus, ExceptionReply
from drivers.modbus.config import ModbusDeviceConfig
from drivers.modbus.datatypes import Function
from gateway.model import Quality, Sample

BASES = (40000, 0, 50000)
MARKER = [0x5375, 0x6E53]
END = 0xFFFF
SUPPORTED = frozenset({1, 101, 102, 103, 201, 202, 203, 204, 701})
MAX_MODELS = 64

# SunSpec type -> (our table type, "not implemented" raw value or None)
_TYPES: dict[str, tuple[str, int | None]] = {
    "int16": ("int16", -0x8000), "sunssf": ("int16", -0x8000), "uint16": ("uint16", 0xFFFF),
    "count": ("uint16", 0), "acc16": ("uint16", 0), "enum16": ("uint16", 0xFFFF),
    "bitfield16": ("uint16", 0xFFFF), "int32": ("int32", -0x80000000),
    "uint32": ("uint32", 0xFFFFFFFF), "acc32": ("uint32", 0), "enum32": ("uint32", 0xFFFFFFFF),
    "bitfield32": ("uint32", 0xFFFFFFFF), "int64": ("int64", -(1 << 63)),
    "uint64": ("uint64", (1 << 64) - 1), "acc64": ("uint64", 0), "float32": ("float32", None),
    "float64": ("float64", None), "string": ("string", None),
}


@dataclass(frozen=True)
class SunSpecPoint:
    name: str
    type: str  # our table type
    offset: int  # registers from the model's ID register
    size: int
    sf: str | None
    missing: int | None
    decode: dt.Decoder


@dataclass(frozen=True)
class SunSpecModel:
    id: int
    name: str
    address: int  # of the ID register
    length: int  # L: registers after ID and L
    points: tuple[SunSpecPoint, ...]
    sf_names: frozenset[str]


@functools.lru_cache(maxsize=32)
def model_definition(model_id: int) -> dict[str, Any]:
    path = resources.files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def layout(model_id: int) -> list[dict[str, Any]]:
    """Top-level points of a model with their register offsets (ID is offset 0)."""
    out, offset = [], 0
    for p in model_definition(model_id)["group"]["points"]:
        size = int(p.get("size", 1))
        out.append({**p, "offset": offset, "size": size})
        offset += size
    return out


def build_model(model_id: int, address: int, length: int) -> SunSpecModel:
    points = []
    for p in layout(model_id):
        kind = _TYPES.get(p["type"])
        if kind is None or p["name"] in ("ID", "L") or p["offset"] + p["size"] > length + 2:
            continue
        ours, missing = kind
        length_arg = p["size"] if ours == "string" else None
        decoder = dt.make_decoder(ours, dt.Order.ABCD, bit=None, length=length_arg)
        points.append(SunSpecPoint(p["name"], ours, p["offset"], p["size"], p.get("sf"),
                                   missing, decoder))
    name = model_definition(model_id)["group"]["name"]
    sf_names = frozenset(p.sf for p in points if p.sf and not _is_number(p.sf))
    return SunSpecModel(model_id, name, address, length, tuple(points), sf_names)


class SunSpecReader:
    """Discovers the chain on first use (and after a failure), then reads it every cycle."""

    def __init__(self) -> None:
        self.models: list[SunSpecModel] | None = None

    async def discover(self, bus: Bus, cfg: ModbusDeviceConfig) -> list[SunSpecModel]:
        for base in BASES:
            try:
                regs = await bus.read(cfg, Function.HOLDING, base, 2)
            except (ExceptionReply, BadReply):
                continue
            if regs == MARKER:
                break
        else:
            raise BadReply(cfg.id, f"no SunSpec marker 'SunS' at {', '.join(map(str, BASES))}")
        models: list[SunSpecModel] = []
        addr = base + 2
        for _ in range(MAX_MODELS):
            model_id, length = await bus.read(cfg, Function.HOLDING, addr, 2)
            if model_id == END:
                return models
            if model_id in SUPPORTED:
                models.append(build_model(int(model_id), addr, int(length)))
            addr += 2 + int(length)
        raise BadReply(cfg.id, f"SunSpec chain from {base} has no end marker")

    async def cycle(self, bus: Bus, cfg: ModbusDeviceConfig, ts: int) -> list[Sample]:
        if self.models is None:
            self.models = await self.discover(bus, cfg)
        samples: list[Sample] = []
        try:
            for model in self.models:
                regs: list[int] = []
                total = model.length + 2
                for start in range(0, total, cfg.max_registers):
                    count = min(cfg.max_registers, total - start)
                    regs += await bus.read(cfg, Function.HOLDING, model.address + start, count)
                if regs[0] != model.id:  # the chain moved (firmware update): rediscover
                    raise BadReply(cfg.id, f"model {model.id} is no longer at {model.address}")
                samples.extend(decode_model(cfg.id, model, regs, ts))
        except Exception:
            self.models = None
            raise
        return samples


def decode_model(device: str, model: SunSpecModel, regs: list[int], ts: int) -> list[Sample]:
    buf = dt.registers_to_bytes(regs)
    raw: dict[str, Any] = {}
    for p in model.points:
        value: Any = p.decode(buf, 2 * p.offset)
        if (
            (p.missing is not None and value == p.missing)
            or (isinstance(value, float) and math.isnan(value))
            or (p.type == "string" and value == "")
        ):
            value = None
        raw[p.name] = value
    out = []
    for p in model.points:
        value = raw[p.name]
        if value is None or p.name in model.sf_names:  # missing, or a scale factor itself
            continue
        if p.sf is not None:
            sf = raw.get(p.sf) if not _is_number(p.sf) else int(p.sf)
            if sf is None:
                out.append(Sample(device, f"{model.id}.{p.name}", ts, None, Quality.BAD))
                continue
            value = _scaled(value, int(sf))
        out.append(Sample(device, f"{model.id}.{p.name}", ts, value))
    return out


def _scaled(value: Any, sf: int) -> Any:
    """``value * 10**sf``, exact for an integer register (as :mod:`drivers.modbus.scaling`
    does for configured scales): 2301 with sf -1 is 230.1 (not 230.10000000000002), and an
    integer when sf >= 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 10 ** sf if sf >= 0 else value / 10 ** -sf
    return value * 10.0 ** sf


def _is_number(text: str) -> bool:
    return text.lstrip("-").isdigit()


def encode_model(model_id: int, values: dict[str, Any]) -> list[int]:
    """Registers of a whole model (ID, L, body) with the given raw values; others missing."""
    points = layout(model_id)
    length = sum(p["size"] for p in points) - 2
    regs = [0] * (length + 2)
    for p in points:
        kind = _TYPES.get(p["type"])
        if kind is None:
            continue
        ours, missing = kind
        value = values.get(p["name"], missing if missing is not None else 0)
        if p["name"] == "ID":
            value = model_id
        elif p["name"] == "L":
            value = length
        if ours == "string":
            words = dt.make_encoder("string", dt.Order.ABCD, length=p["size"])(value or "")
        else:
            code = dt.DATA_TYPES[ours].struct_code
            assert code is not None
            if code.isupper() and isinstance(value, int) and value < 0:
                value &= (1 << (8 * struct.calcsize(code))) - 1
            words = dt.make_encoder(ours, dt.Order.ABCD, length=None)(value)
        regs[p["offset"] : p["offset"] + p["size"]] = words
    return regs


def demo_image(t: float = 0.0, base: int = 40000) -> tuple[int, list[int]]:
    """A three-phase inverter (models 1 and 103) whose power moves with ``t`` seconds."""
    watts = 4000 + 1500 * math.sin(t / 11.0)
    regs = [*MARKER]
    regs += encode_model(1, {"Mn": "fieldgate", "Md": "SIM-INV-5K", "SN": "FG0001",
                             "Vr": "1.0.0", "DA": 1})
    regs += encode_model(103, {
        "A": round(watts / 230 / 3 * 100), "AphA": round(watts / 690 * 100),
        "AphB": round(watts / 690 * 100), "AphC": round(watts / 690 * 100), "A_SF": -2,
        "PhVphA": 2301, "PhVphB": 2298, "PhVphC": 2305, "V_SF": -1,
        "W": round(watts), "W_SF": 0, "Hz": 5000, "Hz_SF": -2,
        "WH": round(1_000_000 + t * watts / 3600), "WH_SF": 0,
        "TmpCab": 412, "Tmp_SF": -1, "St": 4, "Evt1": 0,
    })
    regs += [END, 0]
    return base, regs
