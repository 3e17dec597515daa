"""Spool durability, duplicates, conflicts and crash debris."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from hospital.imaging.adapters.spool import Spool, SpoolEntry, SpoolOutcome
from hospital.imaging.domain.part10 import build_file_header

UID = "1.2.826.0.1.3680043.10.1.42"


def _instance(payload: bytes, uid: str = UID, ae: str = "CT_HUE") -> bytes:
    header = build_file_header(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=uid,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        source_ae_title=ae,
    )
    return header + payload


def _put(spool: Spool, content: bytes, uid: str = UID) -> tuple[SpoolOutcome, SpoolEntry]:
    with spool.stage() as staged:
        staged.write(content)
        result = staged.commit(uid)
    return result.outcome, result.entry


def _tmp_files(spool: Spool) -> list[Path]:
    return list((spool.root / "tmp").iterdir())


def test_commit_is_durable_and_survives_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    content = _instance(b"\x08\x00\x18\x00UI\x02\x001\x00")
    outcome, entry = _put(spool, content)
    assert outcome is SpoolOutcome.STORED
    assert entry.path == tmp_path / "spool" / "incoming" / f"{UID}.dcm"
    assert _tmp_files(spool) == []

    reopened = Spool(tmp_path / "spool")
    assert reopened.pending() == [entry]
    with reopened.open(entry) as fp:
        assert fp.read() == content
    reopened.done(entry)
    reopened.done(entry)  # idempotent
    assert reopened.pending() == []


def test_failure_inside_stage_leaves_nothing(spool: Spool) -> None:
    with pytest.raises(RuntimeError), spool.stage() as staged:
        staged.write(_instance(b"partial"))
        raise RuntimeError("connection dropped")
    assert _tmp_files(spool) == []
    assert spool.pending() == []


def test_uncommitted_stage_leaves_nothing(spool: Spool) -> None:
    with spool.stage() as staged:
        staged.write(_instance(b"refused"))
    assert _tmp_files(spool) == []
    assert spool.pending() == []


def test_same_content_twice_is_one_entry(spool: Spool) -> None:
    first = _put(spool, _instance(b"same bytes", ae="CT_HUE"))
    # Another sender (other Source AE Title in the meta) with the same data set is still a duplicate.
    second = _put(spool, _instance(b"same bytes", ae="WORKSTATION"))
    assert first[0] is SpoolOutcome.STORED
    assert second == (SpoolOutcome.DUPLICATE, first[1])
    assert spool.pending() == [first[1]]


def test_different_content_is_kept_as_conflict(spool: Spool) -> None:
    original = _put(spool, _instance(b"version one"))
    conflict = _put(spool, _instance(b"version two"))
    again = _put(spool, _instance(b"version two"))

    assert conflict[0] is SpoolOutcome.CONFLICT
    assert conflict[1].conflict and conflict[1].sop_instance_uid == UID
    assert conflict[1].path.parent.name == "conflicts"
    assert again == (SpoolOutcome.DUPLICATE, conflict[1])
    assert set(spool.pending()) == {original[1], conflict[1]}
    with spool.open(original[1]) as fp:
        assert fp.read().endswith(b"version one")  # the first copy is never overwritten
    with spool.open(conflict[1]) as fp:
        assert fp.read().endswith(b"version two")


def test_entry_marked_done_allows_the_uid_again(spool: Spool) -> None:
    _, entry = _put(spool, _instance(b"first"))
    spool.done(entry)
    assert _put(spool, _instance(b"second"))[0] is SpoolOutcome.STORED


def test_stale_temp_files_are_removed_but_live_ones_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    crashed = spool.root / "tmp" / "crashed.part"
    crashed.write_bytes(b"half an image")
    live = spool.root / "tmp" / "live.part"
    live.write_bytes(b"being received")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a writer in another worker process holds it
        Spool(tmp_path / "spool")
        assert not crashed.exists()
        assert live.exists()
    finally:
        os.close(fd)


def test_rejects_unsafe_names_and_foreign_entries(spool: Spool, tmp_path: Path) -> None:
    with spool.stage() as staged:
        staged.write(b"x")
        with pytest.raises(ValueError):
            staged.commit("../../etc/passwd")
    with pytest.raises(ValueError):
        spool.done(SpoolEntry(tmp_path / "elsewhere.dcm", UID, conflict=False))
    assert _tmp_files(spool) == []
