from __future__ import annotations

import os
import time
import uuid

from hospital.chassis.ids import new_id


def test_ids_are_rfc_uuid7_increasing_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(20_000)]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert parsed[0].int >> 80 >= before  # the first 48 bits are Unix milliseconds


def test_a_forked_child_does_not_reuse_the_parents_random_pool() -> None:
    new_id()  # fill the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    parent = new_id()
    assert child[19:] != parent[19:]  # the random tails differ
