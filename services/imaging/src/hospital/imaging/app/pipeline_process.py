"""The ingest pipeline (spool -> S3 -> index) in its own OS process.

    python -m hospital.imaging.app.pipeline_process <channel fd>     (settings JSON on stdin)

Reading, hashing and uploading every received file is the largest Python cost of ingest; in the serve
process it competes for one GIL with the DICOM acceptor, C-FIND/C-MOVE, DICOMweb and the API. So the
serve (or worker) process runs a :class:`PipelineProcess` in place of the pipeline: it starts this
module as a child with the same settings, forwards wake-ups ("an instance was spooled") over a
``SOCK_SEQPACKET`` pair, and shows the child's status (indexed count, last error) in
``GET /api/v1/pipeline``. The child runs the unchanged :class:`~hospital.imaging.app.ingest.IngestPipeline`
with its own database engine and object store client. It stops when the parent's end of the channel
closes (finishing the batch in progress); a child that dies is restarted. Nothing is lost either way:
the spool is the queue, and an instance leaves it only after it is uploaded and indexed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from hospital.chassis import aio

if TYPE_CHECKING:  # the settings import the DICOM listener's configuration (api.dicom)
    from hospital.imaging.config import ImagingSettings

log = logging.getLogger(__name__)

MSG_WAKE = b"W"
_RESTART_DELAY = 1.0


class PipelineProcess:
    """Parent side: a Components.worker that keeps one pipeline child running. `notify` is thread-safe."""

    def __init__(self, settings: ImagingSettings) -> None:
        self.s = settings
        self.indexed = 0
        self.last_error: str | None = None
        self.pid: int | None = None
        self._channel: socket.socket | None = None
        self._indexed_before = 0  # by children that exited
        #: Called (on the event loop) whenever the child reports progress (after each index commit).
        self.on_indexed: list[Callable[[], None]] = []

    def notify(self, _stored: Any = None) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            channel.send(MSG_WAKE, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            pass  # a wake-up is already queued, or the child is restarting (it drains the spool on start)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            code = await self._run_child(stop)
            if stop.is_set():
                break
            self.last_error = f"pipeline process exited with {code}; restarting"
            log.error("ingest pipeline process exited with %s; restarting", code)
            await _sleep_or_stop(stop, max(0.0, _RESTART_DELAY - (time.monotonic() - started)))

    def _spawn(self, child_end: socket.socket) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hospital.imaging.app.pipeline_process", str(child_end.fileno())],
            pass_fds=[child_end.fileno()],
            stdin=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(self.s.model_dump_json().encode())  # settings (with secrets) never on a command line
        proc.stdin.close()
        return proc

    async def _run_child(self, stop: asyncio.Event) -> int | None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await asyncio.to_thread(self._spawn, child_end)
        finally:
            child_end.close()
        self.pid = proc.pid
        parent_end.setblocking(False)
        self._channel = parent_end
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()
        ready = asyncio.Event()  # the child reports once it has started (imports take seconds)

        def readable() -> None:
            while True:
                try:
                    message = parent_end.recv(4096)
                except BlockingIOError:
                    return
                except OSError:
                    message = b""
                if not message:
                    loop.remove_reader(parent_end.fileno())
                    closed.set()
                    return
                status = json.loads(message)
                ready.set()
                self.indexed = self._indexed_before + int(status.get("indexed", 0))
                self.last_error = status.get("last_error")
                for callback in list(self.on_indexed):
                    callback()

        loop.add_reader(parent_end.fileno(), readable)
        self.notify()
        try:
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                {waiter, asyncio.ensure_future(closed.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
        finally:
            self._channel = None
            if not closed.is_set():
                loop.remove_reader(parent_end.fileno())
            try:
                parent_end.shutdown(socket.SHUT_RDWR)  # EOF: the child finishes its batch and exits
            except OSError:
                pass
            parent_end.close()
            if not ready.is_set():
                proc.terminate()  # still starting: nothing in progress (and every step is redone safely)
            code = await asyncio.to_thread(_wait, proc, float(self.s.shutdown_grace_seconds))
            self._indexed_before = self.indexed
            self.pid = None
        return code


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # Safe at any point: uploads are idempotent, the index transaction is atomic, and spool files
        # are removed only after it commits.
        log.warning("ingest pipeline process %d did not stop in %.0fs; killing it", proc.pid, timeout)
        proc.kill()
        return proc.wait()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


# ---------------------------------------------------------------------------------------- child side
async def _child(channel: socket.socket, settings_json: str) -> None:
    from hospital.chassis.audit import keyring_for
    from hospital.chassis.db import Database
    from hospital.chassis.storage import ObjectStore
    from hospital.chassis.uow import UnitOfWork
    from hospital.imaging.adapters.spool import Spool
    from hospital.imaging.app.ingest import IngestPipeline
    from hospital.imaging.config import ImagingSettings

    s = ImagingSettings.model_validate_json(settings_json)
    db = Database(s.database_url, pool_size=2, audit_keyring=keyring_for(s))
    store = ObjectStore.from_settings(s)
    rt = SimpleNamespace(
        settings=s, db=db, store=store, uow=lambda: UnitOfWork(db, source=s.service, on_commit=None)
    )
    pipeline = IngestPipeline(rt, s, Spool(s.spool_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    channel.setblocking(False)

    def readable() -> None:
        while True:
            try:
                message = channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                loop.remove_reader(channel.fileno())
                stop.set()
                return
            pipeline.notify()

    loop.add_reader(channel.fileno(), readable)

    def indexed_now() -> None:  # at once after a commit: STOW-RS answers waiting for it
        try:
            channel.send(
                json.dumps({"indexed": pipeline.indexed, "last_error": pipeline.last_error}).encode()
            )
        except (BlockingIOError, OSError):
            pass

    pipeline.on_indexed.append(indexed_now)

    async def report() -> None:
        last: tuple[int, str | None] | None = None
        while True:
            now = (pipeline.indexed, pipeline.last_error)
            if now != last:
                try:
                    channel.send(json.dumps({"indexed": now[0], "last_error": now[1]}).encode())
                    last = now
                except (BlockingIOError, OSError):
                    pass
            if stop.is_set():
                return
            await _sleep_or_stop(stop, 0.2)

    reporter = asyncio.create_task(report())
    try:
        await pipeline.run(stop)
    finally:
        stop.set()
        await reporter
        await db.dispose()


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(argv[0]))
    settings_json = sys.stdin.read()
    level = json.loads(settings_json).get("log_level", "INFO")
    logging.basicConfig(
        level=str(level).upper(),
        format="%(asctime)s %(levelname)s pipeline[%(process)d] %(name)s: %(message)s",
    )
    aio.run(_child(channel, settings_json))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
