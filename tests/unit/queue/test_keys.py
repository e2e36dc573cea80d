"""Redis key names: every key of one prefix under the one hash tag `{prefix}`, so the multi-key Lua scripts and
MULTI/EXEC run on Redis Cluster, where all keys of a command must live in one slot."""

from __future__ import annotations

import pytest

from analytics.queue.keys import QueueKeys

SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key: str) -> int:
    """The cluster slot of `key`: only its hash tag is hashed, the text between the first `{` and the next `}`, when
    that is not empty (the Redis Cluster specification's HASH_SLOT)."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc16(data) % SLOTS


def every_key(keys: QueueKeys, writer_ids: tuple[str, ...] = ("w1", "w2")) -> list[str]:
    per_writer = [name for writer_id in writer_ids for name in (keys.processing(writer_id), keys.heartbeat(writer_id))]
    return [keys.queue, keys.dead, keys.writers, *per_writer]


def test_crc16_matches_the_cluster_specification() -> None:
    """The specification's check value, and slots Redis itself reports (`CLUSTER KEYSLOT`)."""
    assert crc16(b"123456789") == 0x31C3
    assert slot("foo") == 12182
    assert slot("{user1000}.following") == slot("{user1000}.followers") == slot("user1000")
    assert slot("foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS  # an empty tag: the whole key is hashed


def test_the_key_names() -> None:
    """The names are shared with the Lua scripts, the dead-letter commands and running deployments: fixed."""
    keys = QueueKeys("analytics")
    assert (keys.queue, keys.dead, keys.writers) == ("{analytics}:queue", "{analytics}:dead", "{analytics}:writers")
    assert keys.processing("host-1-abc") == "{analytics}:processing:host-1-abc"
    assert keys.heartbeat("host-1-abc") == "{analytics}:heartbeat:host-1-abc"


@pytest.mark.parametrize("prefix", ["analytics", "test-1a2b3c", "a", "with space", "ünïcode"])
def test_every_key_carries_the_one_hash_tag(prefix: str) -> None:
    for key in every_key(QueueKeys(prefix)):
        assert key.startswith(f"{{{prefix}}}:")
        assert key.count("{") == key.count("}") == 1, key


def test_processing_and_heartbeat_are_per_writer() -> None:
    keys = QueueKeys("p")
    names = {keys.processing("w1"), keys.processing("w2"), keys.heartbeat("w1"), keys.heartbeat("w2")}
    assert len(names) == 4
    assert keys.processing("w1").endswith(":w1")
    assert keys.heartbeat("w2").endswith(":w2")
    assert not names & {keys.queue, keys.dead, keys.writers}


@pytest.mark.parametrize("prefix", ["analytics", "test-1a2b3c", "faults-0f0f0f", "x", "ünïcode"])
def test_every_key_of_a_prefix_is_in_one_slot(prefix: str) -> None:
    """Writer ids come from host names and pids; even braces in one cannot move its keys out of the prefix's slot."""
    keys = QueueKeys(prefix)
    slots = {slot(key) for key in every_key(keys, ("w1", "host-42-9f", "odd{id}", "}{"))}
    assert slots == {crc16(prefix.encode()) % SLOTS}


def test_prefixes_are_apart() -> None:
    """Two deployments on one Redis never share a key."""
    assert not set(every_key(QueueKeys("a"))) & set(every_key(QueueKeys("b")))
    assert not set(every_key(QueueKeys("a"))) & set(every_key(QueueKeys("a:b")))


@pytest.mark.parametrize("prefix", ["", "a{b", "c}"])
def test_a_prefix_that_would_not_be_one_hash_tag_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="hash tag"):
        QueueKeys(prefix)


def test_one_shard_keeps_the_key_names_of_the_unsharded_queue() -> None:
    """Shard 0 is the queue as it was before shards: a deployment that upgrades finds its records and processing
    lists under the same names (ANALYTICS_QUEUE_SHARDS defaults to 1, which is shard 0 alone)."""
    for keys in (QueueKeys("analytics"), QueueKeys("analytics", 0), QueueKeys("analytics", 5).of_shard(0)):
        assert keys.tag == "{analytics}"
        assert (keys.queue, keys.dead, keys.writers) == ("{analytics}:queue", "{analytics}:dead", "{analytics}:writers")
        assert keys.processing("host-1-abc") == "{analytics}:processing:host-1-abc"
        assert keys.heartbeat("host-1-abc") == "{analytics}:heartbeat:host-1-abc"
    assert QueueKeys("analytics").lease == "{analytics}:lease"


def test_shard_n_has_the_hash_tag_prefix_colon_n() -> None:
    keys = QueueKeys("analytics", 3)
    assert (keys.queue, keys.dead, keys.writers, keys.lease) == (
        "{analytics:3}:queue",
        "{analytics:3}:dead",
        "{analytics:3}:writers",
        "{analytics:3}:lease",
    )
    assert keys.processing("w") == "{analytics:3}:processing:w"
    assert keys.heartbeat("w") == "{analytics:3}:heartbeat:w"
    # What every process shares stays on shard 0's tag, whatever shard it is asked from.
    assert keys.shard_count == QueueKeys("analytics").shard_count == "{analytics}:shards"
    assert keys.salt("2025-11-12") == "{analytics}:salt:2025-11-12"


@pytest.mark.parametrize("prefix", ["analytics", "test-1a2b3c", "ünïcode"])
def test_every_key_a_script_touches_is_in_its_shards_one_slot(prefix: str) -> None:
    """What Redis Cluster needs: claim, recover, give back, the lease and a dead-letter requeue each touch one shard's
    keys, so each shard's keys must share a slot, and the slot must be the shard's own tag's."""
    for shard in range(16):
        keys = QueueKeys(prefix, shard)
        slots = {slot(key) for key in [*every_key(keys, ("w1", "odd{id}")), keys.lease]}
        assert slots == {slot(keys.tag)}, shard


def test_shards_spread_over_slots_and_never_share_a_key() -> None:
    """Shards exist to spread the queue over a cluster's nodes: their tags must hash apart."""
    shards = [QueueKeys("analytics", shard) for shard in range(16)]
    assert len({slot(keys.tag) for keys in shards}) == 16
    names = [set(every_key(keys)) | {keys.lease} for keys in shards]
    assert sum(len(each) for each in names) == len(set().union(*names))


@pytest.mark.parametrize("prefix", ["a:1", "analytics:0", "x:42"])
def test_a_prefix_that_would_be_another_prefixs_shard_is_refused(prefix: str) -> None:
    """`{a:1}` is shard 1 of prefix `a`: a deployment with prefix `a:1` would share its keys."""
    with pytest.raises(ValueError, match="shard"):
        QueueKeys(prefix)
