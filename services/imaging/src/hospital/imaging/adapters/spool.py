"""Durable local spool for received DICOM instances.

The C-STORE handler acknowledges an instance only after it is in this spool;
a separate queue later uploads each pending entry to object storage, indexes
it and calls :meth:`Spool.done`.

Layout under the spool root::

    tmp/                          files being received (never read by consumers)
    incoming/<SOPInstanceUID>.dcm          durable, waiting for upload
    conflicts/<SOPInstanceUID>.<digest>.dcm same UID as a pending entry, other content

Durability protocol (:meth:`StagedFile.commit`): the temp file is fsync'd,
then hard-linked to its final name and the final directory is fsync'd. A hard
link rather than a rename is used because ``link(2)`` refuses to replace an
existing name, which makes "is this SOP Instance UID already pending?" atomic,
across threads and across worker processes sharing one spool.

The directory fsync is a group commit: associations storing at the same time in one process share
one directory fsync when their links precede its start (:class:`_GroupSync`); each still returns only
after an fsync that began after its own link has completed, so the guarantee is unchanged.

Each temp file is ``flock``'d by its writer for its whole life. Locks vanish
when a process dies, so on start-up any unlocked temp file is debris from a
crash and is deleted, while temp files of live sibling processes are left alone.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hospital.imaging.domain.instance_checks import is_valid_uid
from hospital.imaging.domain.part10 import dataset_digest, same_dataset

logger = logging.getLogger(__name__)

_SUFFIX = ".dcm"
_TMP_SUFFIX = ".part"
# Conflict names carry this many hex digits of the content digest: enough to
# tell the versions of one instance apart, short enough to keep names readable.
_DIGEST_CHARS = 16


class SpoolOutcome(enum.Enum):
    #: A new durable entry was created.
    STORED = "stored"
    #: Identical content was already pending; nothing new was written.
    DUPLICATE = "duplicate"
    #: Same SOP Instance UID as a pending entry but other content; kept aside.
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One durable file in the spool."""

    path: Path
    sop_instance_uid: str
    #: True for a conflicting version kept under ``conflicts/``.
    conflict: bool


@dataclass(frozen=True, slots=True)
class SpoolResult:
    outcome: SpoolOutcome
    #: The entry holding the content (the pre-existing one for a duplicate).
    entry: SpoolEntry


class StagedFile:
    """A temp file being written; becomes durable only through :meth:`commit`."""

    def __init__(self, spool: Spool, path: Path, fp: BinaryIO) -> None:
        self._spool = spool
        self._fp = fp
        self._path = path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Views are released explicitly, even on error: a lingering slice of the
        # caller's buffer (e.g. kept alive by a logged traceback) would stop its
        # owner, pynetdicom's BytesIO, from being resized or closed.
        with memoryview(data) as raw, raw.cast("B") as view:
            offset = 0
            while offset < len(view):
                with view[offset:] as rest:
                    offset += self._fp.write(rest)

    def copy_from(self, fd: int, offset: int, count: int) -> None:
        """Append `count` bytes of file `fd` from `offset`, in the kernel (no copy through this process's
        memory): how STOW-RS moves an instance from its request's temporary file (app/stow.py)."""
        self._fp.flush()
        out = self._fp.fileno()
        while count > 0:
            try:
                done = os.copy_file_range(fd, out, count, offset)
            except OSError:
                done = 0
            if done <= 0:  # not supported here (or a short read): do it by hand
                chunk = os.pread(fd, min(count, 1 << 20), offset)
                if not chunk:
                    raise OSError(f"source file ended {count} bytes early")
                done = os.write(out, chunk)
            offset += done
            count -= done
        self._fp.seek(0, os.SEEK_END)

    def commit(self, sop_instance_uid: str) -> SpoolResult:
        """Make the staged content durable under `sop_instance_uid`."""
        if not is_valid_uid(sop_instance_uid):
            raise ValueError(f"not a valid UID for a spool name: {sop_instance_uid!r}")
        os.fsync(self._fp.fileno())
        return self._spool._commit(self._path, sop_instance_uid)


class Spool:
    """A directory of durable, not-yet-uploaded DICOM Part 10 files."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._incoming = self.root / "incoming"
        self._conflicts = self.root / "conflicts"
        for directory in (self._tmp, self._incoming, self._conflicts):
            directory.mkdir(parents=True, exist_ok=True)
        self._syncs = {d: _GroupSync(d) for d in (self._incoming, self._conflicts)}
        _fsync_dir(self.root)
        _fsync_dir(self.root.parent)
        self._remove_stale_temp_files()

    @contextmanager
    def stage(self) -> Iterator[StagedFile]:
        """Open a temp file; it is deleted on exit whether or not it was committed."""
        while True:
            path = self._tmp / f"{uuid.uuid4().hex}{_TMP_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                break
            # A sibling process starting up took the file for crash debris between our create and our
            # lock, and deleted it: take another name (writing to the unlinked file would fail at link).
            os.close(fd)
        try:
            with os.fdopen(fd, "wb", buffering=0, closefd=False) as fp:
                yield StagedFile(self, path, fp)
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    def pending(self) -> list[SpoolEntry]:
        """Durable entries not yet marked done, oldest first (conflicts included)."""
        found: list[tuple[int, SpoolEntry]] = []
        for directory, conflict in ((self._incoming, False), (self._conflicts, True)):
            with os.scandir(directory) as it:
                for item in it:
                    if not item.name.endswith(_SUFFIX):
                        continue
                    try:
                        mtime = item.stat().st_mtime_ns
                    except FileNotFoundError:  # marked done meanwhile
                        continue
                    stem = item.name.removesuffix(_SUFFIX)
                    uid = stem.rsplit(".", 1)[0] if conflict else stem
                    found.append((mtime, SpoolEntry(Path(item.path), uid, conflict)))
        found.sort(key=lambda pair: (pair[0], pair[1].path.name))
        return [entry for _, entry in found]

    def open(self, entry: SpoolEntry) -> BinaryIO:
        """Open an entry's Part 10 file for reading."""
        return self._own(entry).open("rb")

    def done(self, entry: SpoolEntry) -> None:
        """Forget an entry once it is safely stored elsewhere. Idempotent."""
        path = self._own(entry)
        path.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def done_many(self, entries: list[SpoolEntry]) -> None:
        """:meth:`done` for a batch: one directory fsync per directory instead of one per entry."""
        directories = set()
        for entry in entries:
            path = self._own(entry)
            path.unlink(missing_ok=True)
            directories.add(path.parent)
        for directory in directories:
            _fsync_dir(directory)

    def _own(self, entry: SpoolEntry) -> Path:
        if entry.path.parent not in (self._incoming, self._conflicts):
            raise ValueError(f"{entry.path} is not an entry of the spool at {self.root}")
        return entry.path

    def _commit(self, staged: Path, uid: str) -> SpoolResult:
        target = SpoolEntry(self._incoming / f"{uid}{_SUFFIX}", uid, conflict=False)
        while True:
            if self._link_durably(staged, target.path):
                return SpoolResult(SpoolOutcome.STORED, target)
            try:
                identical = same_dataset(target.path, staged)
            except FileNotFoundError:
                continue  # the pending entry was marked done meanwhile: link again
            if identical:
                return SpoolResult(SpoolOutcome.DUPLICATE, target)
            break
        digest = dataset_digest(staged)[:_DIGEST_CHARS]
        conflict = SpoolEntry(self._conflicts / f"{uid}.{digest}{_SUFFIX}", uid, conflict=True)
        if self._link_durably(staged, conflict.path):
            return SpoolResult(SpoolOutcome.CONFLICT, conflict)
        return SpoolResult(SpoolOutcome.DUPLICATE, conflict)

    def _remove_stale_temp_files(self) -> None:
        removed = 0
        for path in self._tmp.iterdir():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            else:
                path.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        if removed:
            logger.warning("spool %s: removed %d temp files left by an interrupted write", self.root, removed)

    def _link_durably(self, source: Path, target: Path) -> bool:
        """Hard-link `source` to `target` and fsync the directory; False if `target` exists."""
        try:
            os.link(source, target)
        except FileExistsError:
            return False
        self._syncs[target.parent].sync()
        return True


class _GroupSync:
    """fsync of one directory, shared by the threads that need it at the same time.

    A caller takes a ticket after its change (the link) is made; an fsync that starts after a ticket was
    taken covers it. One caller at a time runs the fsync (covering every ticket taken before it started);
    the others wait for it, or run the next one. Nobody returns before an fsync covering their ticket
    has completed; a failed fsync raises in the caller that ran it, and the waiters try again themselves.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._tickets = 0
        self._covered = 0
        self._running = False
        self.fsyncs = 0  # how many fsyncs ran (for tests and measurement)

    def sync(self) -> None:
        with self._cond:
            self._tickets += 1
            ticket = self._tickets
            while self._covered < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running, covers, done = True, self._tickets, False
                self._cond.release()
                try:
                    _fsync_dir(self.path)
                    done = True
                finally:
                    self._cond.acquire()
                    self._running = False
                    if done:
                        self._covered = max(self._covered, covers)
                        self.fsyncs += 1
                    self._cond.notify_all()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
