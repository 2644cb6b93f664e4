"""The one data-type table that drives both config validation and register decoding.

Following Home Assistant's Modbus integration, every type is a row: how many registers it
takes, which struct code decodes it, and which options make sense for it. The config model asks
the table whether a point is valid; the poller asks the same table for a decoder. Adding a type
is adding a row, and validation and decoding cannot drift apart.

Word/byte orders use the usual letters for a 32-bit value whose big-endian bytes are ``ABCD``:
``ABCD`` (big-endian), ``CDAB`` (word swap, common on meters), ``BADC`` (byte swap) and
``DCBA`` (little-endian). For 64-bit values the same four names apply to all four words, and
the explicit 64-bit spellings ``ABCDEFGH``/``GHEFCDAB``/``BADCFEHG``/``HGFEDCBA`` are aliases.
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Registers = Sequence[int]
Decoded = float | int | bool | str


class Words(list[int]):
    """The registers of one read reply, made by the bus, with the reply's own bytes kept as
    ``raw`` (big-endian, as on the wire): :func:`registers_to_bytes` hands those on instead
    of packing the list again. The list is the reply; nothing changes it in place (a caller
    that wants to change values makes a plain list of them)."""

    __slots__ = ("raw",)
    raw: bytes


class Function(enum.StrEnum):
    """The Modbus table a point lives in."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    # Sets, not ``self is Function.COIL or ...``: reading a member off its class is slow in
    # Python 3.11 (a descriptor call, ~1 us), and a 25,000-point site asks these 100,000s of
    # times at start.
    @property
    def is_bit(self) -> bool:
        return self in _BIT_TABLES

    @property
    def writable(self) -> bool:
        return self in _WRITABLE_TABLES


class Order(enum.StrEnum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"
    ABCDEFGH = "ABCDEFGH"
    GHEFCDAB = "GHEFCDAB"
    BADCFEHG = "BADCFEHG"
    HGFEDCBA = "HGFEDCBA"

    @property
    def word_swap(self) -> bool:
        return self in _WORD_SWAPS

    @property
    def byte_swap(self) -> bool:
        return self in _BYTE_SWAPS


_BIT_TABLES = frozenset((Function.COIL, Function.DISCRETE))
_WRITABLE_TABLES = frozenset((Function.HOLDING, Function.COIL))
_WORD_SWAPS = frozenset((Order.CDAB, Order.DCBA, Order.GHEFCDAB, Order.HGFEDCBA))
_BYTE_SWAPS = frozenset((Order.BADC, Order.DCBA, Order.BADCFEHG, Order.HGFEDCBA))


@dataclass(frozen=True)
class TypeSpec:
    """One row of the table. ``registers`` is None when the point gives its own length."""

    name: str
    struct_code: str | None
    registers: int | None
    numeric: bool
    ordered: bool  # byte/word order applies
    functions: frozenset[Function]


_REG = frozenset({Function.HOLDING, Function.INPUT})
_ALL = frozenset(Function)

DATA_TYPES: dict[str, TypeSpec] = {
    spec.name: spec
    for spec in (
        # bool: a coil/discrete input, or one bit (``bit: 0..15``) of a register.
        TypeSpec("bool", None, 1, False, False, _ALL),
        TypeSpec("int16", "h", 1, True, True, _REG),
        TypeSpec("uint16", "H", 1, True, True, _REG),
        TypeSpec("int32", "i", 2, True, True, _REG),
        TypeSpec("uint32", "I", 2, True, True, _REG),
        TypeSpec("int64", "q", 4, True, True, _REG),
        TypeSpec("uint64", "Q", 4, True, True, _REG),
        TypeSpec("float32", "f", 2, True, True, _REG),
        TypeSpec("float64", "d", 4, True, True, _REG),
        # string: ``length`` registers, two ASCII characters each, NULs and spaces trimmed.
        TypeSpec("string", None, None, False, True, _REG),
    )
}

MAX_REGISTERS = 125
MAX_BITS = 2000


def register_count(type_name: str, length: int | None) -> int:
    spec = DATA_TYPES[type_name]
    if spec.registers is not None:
        return spec.registers
    if length is None:
        raise ValueError(f"type {type_name!r} needs a length in registers")
    return length


def validate(
    type_name: str,
    function: Function,
    *,
    order: Order,
    bit: int | None,
    length: int | None,
    scaled: bool,
) -> None:
    """Raise ValueError with a user-facing message when the options do not fit the type."""
    spec = DATA_TYPES.get(type_name)
    if spec is None:
        raise ValueError(f"unknown data type {type_name!r}; known: {', '.join(DATA_TYPES)}")
    if function not in spec.functions:
        raise ValueError(
            f"type {type_name!r} cannot be read from {function.value} "
            f"(use one of: {', '.join(sorted(f.value for f in spec.functions))})"
        )
    if bit is not None and (type_name != "bool" or function.is_bit):
        raise ValueError("'bit' only applies to type bool in a holding or input register")
    if type_name == "bool" and not function.is_bit and bit is None:
        raise ValueError("a bool in a register needs 'bit' (0..15)")
    if length is not None and type_name != "string":
        raise ValueError("'length' only applies to type string")
    if type_name == "string" and (length is None or not 1 <= length <= MAX_REGISTERS):
        raise ValueError(f"type string needs 'length' between 1 and {MAX_REGISTERS} registers")
    words = register_count(type_name, length)
    if order in (Order.ABCDEFGH, Order.GHEFCDAB, Order.BADCFEHG, Order.HGFEDCBA) and words != 4:
        raise ValueError(f"order {order.value} is for 64-bit types, not {type_name!r}")
    if order.word_swap and words == 1 and spec.ordered and type_name != "string":
        raise ValueError(f"order {order.value} swaps words; {type_name!r} is a single register")
    if scaled and not spec.numeric:
        raise ValueError(f"scale/offset do not apply to type {type_name!r}")


def _reorder(raw: bytes, order: Order) -> bytes:
    """Bring wire bytes into big-endian ``ABCD...`` order."""
    if order.byte_swap:
        swapped = bytearray(raw)
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        raw = bytes(swapped)
    if order.word_swap:
        raw = b"".join(raw[i : i + 2] for i in range(len(raw) - 2, -1, -2))
    return raw


Decoder = Callable[[bytes, int], Decoded]
Encoder = Callable[[Decoded], list[int]]


@functools.cache
def make_decoder(type_name: str, order: Order, *, bit: int | None, length: int | None) -> Decoder:
    """Return ``decode(block_bytes, byte_offset)``; block bytes are the big-endian registers.

    The poll path does one ``unpack_from`` per value. Decoders hold no state, so points of
    the same type, order, bit and length share one (cached): a site of 25,000 points builds
    a handful, not 25,000 closures.
    """
    spec = DATA_TYPES[type_name]
    nbytes = 2 * register_count(type_name, length)
    if type_name == "bool":
        mask = 1 << (bit or 0)

        def dec_bit(buf: bytes, off: int) -> Decoded:
            return bool(((buf[off] << 8) | buf[off + 1]) & mask)

        return dec_bit
    if type_name == "string":

        def dec_str(buf: bytes, off: int) -> Decoded:
            raw = _reorder(buf[off : off + nbytes], order)
            return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()

        return dec_str
    assert spec.struct_code is not None
    if not order.byte_swap and not order.word_swap:
        packer = struct.Struct(">" + spec.struct_code)
        return lambda buf, off: packer.unpack_from(buf, off)[0]
    if order.byte_swap and order.word_swap:
        packer = struct.Struct("<" + spec.struct_code)
        return lambda buf, off: packer.unpack_from(buf, off)[0]
    big = struct.Struct(">" + spec.struct_code)

    def dec_swapped(buf: bytes, off: int) -> Decoded:
        return big.unpack(_reorder(buf[off : off + nbytes], order))[0]

    return dec_swapped


def make_encoder(type_name: str, order: Order, *, length: int | None) -> Encoder:
    """The inverse of :func:`make_decoder` for register types (bits in registers excluded)."""
    spec = DATA_TYPES[type_name]
    nbytes = 2 * register_count(type_name, length)

    def to_words(raw: bytes) -> list[int]:
        wire = _reorder(raw, order)  # both swaps are involutions
        return [int.from_bytes(wire[i : i + 2], "big") for i in range(0, len(wire), 2)]

    if type_name == "string":

        def enc_str(value: Decoded) -> list[int]:
            raw = str(value).encode("ascii")
            if len(raw) > nbytes:
                raise ValueError(f"string of {len(raw)} bytes does not fit {nbytes} bytes")
            return to_words(raw.ljust(nbytes, b"\x00"))

        return enc_str
    if type_name == "bool":
        raise ValueError("a bool is written as a coil or by read-modify-write of its register")
    assert spec.struct_code is not None
    packer = struct.Struct(">" + spec.struct_code)
    integral = spec.struct_code not in ("f", "d")

    def enc_num(value: Decoded) -> list[int]:
        if isinstance(value, str):
            raise ValueError(f"type {type_name} needs a number, not {value!r}")
        number: float | int = round(value) if integral else float(value)
        try:
            return to_words(packer.pack(number))
        except struct.error as err:
            raise ValueError(f"{value!r} does not fit type {type_name}: {err}") from None

    return enc_num


def registers_to_bytes(registers: Registers | bytes) -> bytes:
    """Big-endian bytes of a register block; one call per block, then decoders slice it. A
    reply's :class:`Words` already has them, and a block read as bytes
    (``Bus.read_block``) is them."""
    if type(registers) is bytes:
        return registers
    if type(registers) is Words:
        try:
            raw = registers.raw
        except AttributeError:  # a copy (copy.copy, pickle) keeps the list, not the bytes
            pass
        else:
            if len(raw) == 2 * len(registers):  # not changed in length since the reply
                return raw
    return struct.pack(f">{len(registers)}H", *registers)
