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


def test_concurrent_commits_share_directory_fsyncs_without_weakening_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: each commit returns only after a directory fsync that *started* once its link
    existed; concurrent commits share fsyncs."""
    import threading
    import time

    from hospital.imaging.adapters import spool as spool_module

    spool = Spool(tmp_path / "spool")
    incoming = tmp_path / "spool" / "incoming"
    completed: list[set[str]] = []  # per finished fsync of incoming/: the names it covered
    lock = threading.Lock()
    real = spool_module._fsync_dir

    def slow_fsync(path: Path) -> None:
        covered = set(os.listdir(path)) if path == incoming else set()
        time.sleep(0.02)  # a slow disk: commits pile up behind the running fsync
        real(path)
        if path == incoming:
            with lock:
                completed.append(covered)

    monkeypatch.setattr(spool_module, "_fsync_dir", slow_fsync)
    violations: list[str] = []

    def store(n: int) -> None:
        uid = f"{UID}.{n}"
        outcome, entry = _put(spool, _instance(b"x" * n, uid=uid), uid=uid)
        assert outcome is SpoolOutcome.STORED
        with lock:
            if not any(entry.path.name in covered for covered in completed):
                violations.append(uid)

    threads = [threading.Thread(target=store, args=(n,)) for n in range(1, 25)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert violations == []
    assert len(spool.pending()) == 24
    assert len(completed) < 24  # shared: fewer directory fsyncs than commits


def test_a_sibling_sweeping_debris_between_create_and_lock_does_not_lose_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process opening the spool (start-up sweep of unlocked temp files) at the instant a writer has
    created its temp file but not yet locked it deletes that file; the writer must notice and start over."""
    from hospital.imaging.adapters import spool as spool_module

    spool = Spool(tmp_path / "spool")
    real_flock = fcntl.flock
    swept: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not swept:  # the writer, about to lock its new temp file
            swept.append(len(_tmp_files(spool)))
            Spool(tmp_path / "spool")  # a sibling starting now: the temp file is not locked yet
        real_flock(fd, operation)

    monkeypatch.setattr(spool_module.fcntl, "flock", flock)
    content = _instance(b"\x08\x00\x18\x00UI\x02\x001\x00")
    outcome, entry = _put(spool, content)
    assert swept == [1]  # the race happened: the sibling saw (and removed) the unlocked temp file
    assert outcome is SpoolOutcome.STORED and entry.path.read_bytes() == content
    assert _tmp_files(spool) == []
