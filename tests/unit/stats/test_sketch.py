"""Distinct sets (analytics/stats/sketch.py): exact up to 10,000 hashes and in every union of such sets; past that,
registers whose union is the union's registers and whose estimate is within 2 % of the true count."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from analytics.stats import sketch
from analytics.stats.sketch import EXACT_LIMIT, DistinctSet, estimate, registers_of, union


def random_hashes(rng: np.random.Generator, count: int) -> sketch.Hashes:
    return rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64)


def test_a_set_up_to_the_limit_keeps_its_hashes_and_counts_them_exactly() -> None:
    rng = np.random.default_rng(1)
    hashes = random_hashes(rng, EXACT_LIMIT)
    repeated = np.concatenate([hashes, hashes[:500]])
    counted = DistinctSet.of(repeated)
    assert (counted.count, counted.exact, counted.registers) == (EXACT_LIMIT, True, None)
    assert list(counted.sorted_hashes()) == sorted(set(hashes.tolist()))
    again = DistinctSet.decode(counted.count, counted.exact, counted.encode())
    assert list(again.sorted_hashes()) == list(counted.sorted_hashes())


def test_a_bigger_set_counts_exactly_but_keeps_registers() -> None:
    hashes = random_hashes(np.random.default_rng(2), EXACT_LIMIT + 1)
    counted = DistinctSet.of(hashes)
    assert (counted.count, counted.exact, counted.hashes) == (EXACT_LIMIT + 1, True, None)
    again = DistinctSet.decode(counted.count, counted.exact, counted.encode())
    assert again.registers is not None
    assert np.array_equal(again.registers, registers_of(hashes))


def test_a_union_of_exact_sets_is_exact_whatever_its_size() -> None:
    rng = np.random.default_rng(3)
    pool = random_hashes(rng, 30_000)
    parts = [pool[rng.integers(0, len(pool), size=8_000)] for _ in range(6)]
    merged = union([DistinctSet.of(part) for part in parts])
    assert merged.exact
    assert merged.count == len(set(np.concatenate(parts).tolist()))
    assert union([]).count == 0
    assert union([]).exact


def test_registers_of_a_union_are_the_union_of_registers() -> None:
    rng = np.random.default_rng(4)
    first, second = random_hashes(rng, 50_000), random_hashes(rng, 70_000)
    both = registers_of(np.concatenate([first, second]))
    assert np.array_equal(both, np.maximum(registers_of(first), registers_of(second)))


@pytest.mark.parametrize("seed", range(4))
def test_a_union_with_a_sketch_in_it_is_an_estimate_within_two_percent(seed: int) -> None:
    """Sixty unions of random sizes from 10,001 to 3,000,000 hashes, overlapping parts, a sketch among them."""
    rng = np.random.default_rng(seed)
    for _ in range(15):
        total = int(np.exp(rng.uniform(np.log(EXACT_LIMIT + 1), np.log(3_000_000))))
        pool = random_hashes(rng, total)
        big = DistinctSet.of(pool[: max(EXACT_LIMIT + 1, total // 2)])
        small = DistinctSet.of(pool[rng.integers(0, total, size=min(EXACT_LIMIT, total))])
        rest = DistinctSet.of(pool[total // 3 :])
        merged = union([big, small, rest])
        assert not merged.exact
        assert abs(merged.count - total) <= 0.02 * total, (total, merged.count)


def test_small_estimates_and_empty_registers() -> None:
    assert estimate(np.zeros(sketch.REGISTERS, dtype=np.uint8)) == 0.0
    rng = np.random.default_rng(5)
    for count in (1, 10, 100, 1_000, 10_000):
        assert abs(estimate(registers_of(random_hashes(rng, count))) - count) <= max(1, 0.02 * count)


def test_garbage_is_not_decoded() -> None:
    with pytest.raises(ValueError, match="not an encoded distinct set"):
        DistinctSet.decode(1, True, b"R" + bytes(10))
    with pytest.raises(ValueError, match="not an encoded distinct set"):
        DistinctSet.decode(1, True, b"X")


def test_packed_hashes_are_read_as_int8send_wrote_them() -> None:
    hashes = [-(2**63), -1, 0, 7, 2**63 - 1]
    packed = b"".join(struct.pack(">q", value) for value in hashes)
    assert sketch.packed_elements(packed).tolist() == hashes
    assert sketch.packed_elements(b"").tolist() == sketch.packed_elements(None).tolist() == []
