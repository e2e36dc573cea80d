"""Distinct sets of 64-bit hashes (the report cells' visitor and user hashes): exact while small, a HyperLogLog
sketch past that, and either merged into the distinct count of a longer range.

The contract wants distinct counts exact while they are at most 10,000 and allows an estimate within 2 % past that.
A set of at most EXACT_LIMIT hashes keeps them all (80 KB at most); a bigger one keeps 2^16 HyperLogLog registers
(64 KB, a standard error of 0.41 %, so 2 % is nearly five of them). A union of exact sets is exact; a union with
a sketch in it is at least as big as that sketch's set (over 10,000), where an estimate is allowed. Estimates use
Ertl's improved raw estimator ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which
needs neither linear counting nor bias tables at any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

EXACT_LIMIT: Final = 10_000
PRECISION: Final = 16
REGISTERS: Final = 1 << PRECISION
# The bits after the register index: a register holds the position of the first one among them (1 to 49).
_REST_BITS: Final = 64 - PRECISION
_REST_MASK: Final = np.uint64((1 << _REST_BITS) - 1)
_EXACT_TAG: Final = b"H"
_SKETCH_TAG: Final = b"R"
# The elements of a bigint[]'s binary form (array_send without its header): each hash after its length.
_ELEMENTS: Final = np.dtype([("length", ">i4"), ("hash", ">i8")])

Hashes = npt.NDArray[np.int64]
Registers = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class DistinctSet:
    """`count` distinct hashes (an estimate unless `exact`): the sorted hashes themselves while there are at most
    EXACT_LIMIT of them, else their registers."""

    count: int
    exact: bool
    hashes: Hashes | None = None
    registers: Registers | None = None

    @classmethod
    def of(cls, hashes: Hashes) -> DistinctSet:
        """From hashes with repeats, in any order."""
        distinct = _sorted_distinct(hashes)
        if len(distinct) <= EXACT_LIMIT:
            return cls(len(distinct), True, hashes=distinct)
        return cls(len(distinct), True, registers=registers_of(distinct))

    def as_registers(self) -> Registers:
        return self.registers if self.registers is not None else registers_of(self.sorted_hashes())

    def sorted_hashes(self) -> Hashes:
        assert self.hashes is not None, "an exact set up to EXACT_LIMIT keeps its hashes"
        return self.hashes

    def encode(self) -> bytes:
        if self.hashes is not None:
            return _EXACT_TAG + self.hashes.astype("<i8").tobytes()
        assert self.registers is not None
        return _SKETCH_TAG + self.registers.tobytes()

    @classmethod
    def decode(cls, count: int, exact: bool, blob: bytes) -> DistinctSet:
        tag, body = blob[:1], blob[1:]
        if tag == _EXACT_TAG:
            return cls(count, exact, hashes=np.frombuffer(body, dtype="<i8").astype(np.int64))
        if tag == _SKETCH_TAG and len(body) == REGISTERS:
            return cls(count, exact, registers=np.frombuffer(body, dtype=np.uint8).copy())
        raise ValueError(f"not an encoded distinct set (tag {tag!r}, {len(body)} bytes)")


EMPTY: Final = DistinctSet(0, True, hashes=np.empty(0, dtype=np.int64))


def union(parts: Sequence[DistinctSet]) -> DistinctSet:
    """The distinct set of several ranges' hashes: exact when every part keeps its hashes."""
    if all(part.hashes is not None for part in parts):
        return DistinctSet.of(np.concatenate([part.sorted_hashes() for part in parts] or [EMPTY.sorted_hashes()]))
    registers = np.maximum.reduce([part.as_registers() for part in parts])
    return DistinctSet(round(estimate(registers)), False, registers=registers)


def _sorted_distinct(hashes: Hashes) -> Hashes:
    """Sorted, then each hash that differs from the one before: numpy's unique took 70 times as long here."""
    ordered = np.sort(hashes)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def array_elements(packed: bytes | None) -> Hashes:
    """The hashes of concatenated bigint[] binary forms without their headers (reports.sql: `cell_hashes`)."""
    if not packed:
        return EMPTY.sorted_hashes()
    return np.frombuffer(packed, dtype=_ELEMENTS)["hash"].astype(np.int64)


def packed_elements(packed: bytes | None) -> Hashes:
    """Hashes packed 8 bytes each, big-endian, as kept values keep them (migrations/0018.report_value_hashes.sql)."""
    if not packed:
        return EMPTY.sorted_hashes()
    return np.frombuffer(packed, dtype=">i8").astype(np.int64)


def registers_of(hashes: Hashes) -> Registers:
    """The HyperLogLog registers of hashes: the top PRECISION bits pick a register, which keeps the highest position
    of the first one bit in the rest (the rest is below 2^53, so its float64 exponent is exact)."""
    bits = hashes.view(np.uint64)
    index = (bits >> np.uint64(_REST_BITS)).astype(np.intp)
    _, exponent = np.frexp((bits & _REST_MASK).astype(np.float64))
    rank = (_REST_BITS + 1 - exponent).astype(np.uint8)
    registers = np.zeros(REGISTERS, dtype=np.uint8)
    np.maximum.at(registers, index, rank)
    return registers


def estimate(registers: Registers) -> float:
    """Ertl's improved raw estimate of the distinct hashes behind `registers`."""
    histogram = np.bincount(registers, minlength=_REST_BITS + 2).tolist()
    m = float(REGISTERS)
    z = m * _tau(1 - histogram[_REST_BITS + 1] / m)
    for k in range(_REST_BITS, 0, -1):
        z = 0.5 * (z + histogram[k])
    z += m * _sigma(histogram[0] / m)
    return 0.0 if math.isinf(z) else m * m / (2 * math.log(2) * z)


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == previous:
            return z / 3


def distinct_count(parts: Sequence[Hashes]) -> int:
    """The number of distinct hashes in several arrays, each with repeats, in any order."""
    if not parts:
        return 0
    return len(_sorted_distinct(np.concatenate(parts)))
