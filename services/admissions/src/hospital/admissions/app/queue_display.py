"""Live queue for the waiting-room displays (Server-Sent Events), pushed instead of polled.

Each serve process keeps, per clinic room that has at least one display connected, the room's queue
state (what ``GET /api/v1/queues/{room}`` answers) and fans every new state out to all of that room's
displays. The state is read from the database once per change, never per display:

* a ticket change made by this process (visit opened, ticket called / recalled / skipped, visit closed)
  refreshes the room right after its commit;
* a change made by another process (``serve --processes N``, other replicas) arrives as its
  ``admissions.queue.ticket_issued|ticket_called`` or ``admissions.visit.closed`` event, on a NATS core
  subscription (the outbox relay publishes every committed event; events this process wrote itself are
  recognised by their event id and skipped, having refreshed already);
* a slow resync (``queue_display_resync_seconds``, per room, not per display) catches anything missed
  while NATS was unreachable, and the change of service day at midnight.

Refreshes of one room are coalesced: changes that arrive while a refresh runs cause one more refresh.
An idle display costs no query; a keep-alive comment every ``queue_display_keepalive_seconds`` keeps
proxies from closing the stream.

Streams are capped per process, in all and per room (``queue_display_max_streams``,
``queue_display_max_streams_per_room``): :meth:`QueueDisplays.reserve` is called before a stream is
answered, and a room's state exists only while a display that was let in watches it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hospital.chassis.bus import connection_epoch
from hospital.contracts.admissions.v1 import events_pb2

log = logging.getLogger(__name__)
SUBJECTS = {
    "admissions.queue.ticket_issued": events_pb2.QueueTicketIssued,
    "admissions.queue.ticket_called": events_pb2.QueueTicketCalled,
    "admissions.visit.closed": events_pb2.VisitClosed,
}


class _Room:
    __slots__ = ("code", "dirty", "displays", "last_call", "refreshing", "state", "updated")

    def __init__(self, code: str) -> None:
        self.code = code
        self.state: dict[str, Any] | None = None
        self.displays: set[asyncio.Queue[dict[str, Any]]] = set()
        self.refreshing: asyncio.Task[None] | None = None
        self.dirty = False
        self.last_call: dict[str, Any] | None = None
        self.updated = asyncio.Event()  # set after each refresh (first load included)


class DisplaysFull(Exception):
    """No room for another display stream (this process's cap, in all or for the room)."""


class QueueDisplays:
    """Per-process queue state of the watched rooms and their displays."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[dict[str, Any]]],
        *,
        resync_seconds: float = 30.0,
        keepalive_seconds: float = 15.0,
        max_streams: int = 500,
        max_per_room: int = 20,
    ) -> None:
        self._load = load
        self.max_streams, self.max_per_room = max_streams, max_per_room
        self._streams = 0
        self._per_room: dict[str, int] = {}
        self.resync_seconds = resync_seconds
        self.keepalive_seconds = keepalive_seconds
        self._rooms: dict[str, _Room] = {}
        self._own: OrderedDict[str, None] = OrderedDict()  # ids of events this process committed
        self.loads = 0  # database reads of a room's state (tests and metrics)

    # ------------------------------------------------------------------ changes
    def changed(
        self, room: str, *, event_ids: tuple[str, ...] = (), call: dict[str, Any] | None = None
    ) -> None:
        """A ticket change in ``room`` was committed by this process (its events' ids, to skip them when
        they come back from NATS)."""
        for eid in event_ids:
            self._own[eid] = None
        while len(self._own) > 10_000:
            self._own.popitem(last=False)
        self._touch(room, call)

    def on_event(self, subject: str, event_id: str | None, payload: bytes) -> None:
        """An admissions ticket event from NATS (any process's)."""
        if event_id is not None and event_id in self._own:
            del self._own[event_id]
            return
        cls = SUBJECTS.get(subject)
        if cls is None:
            return
        msg = cls.FromString(payload)
        if isinstance(msg, events_pb2.VisitClosed):
            self._touch(msg.visit.room_code, None)
        elif isinstance(msg, events_pb2.QueueTicketCalled):
            self._touch(msg.room_code, {"ticket_number": msg.ticket_number, "action": msg.action})
        else:
            self._touch(msg.room_code, None)

    def _touch(self, code: str, call: dict[str, Any] | None) -> None:
        room = self._rooms.get(code)
        if room is None:  # nobody watches this room here
            return
        if call is not None:
            room.last_call = call
        self._refresh(room, push=True)

    def _refresh(self, room: _Room, *, push: bool) -> None:
        if room.refreshing is not None and not room.refreshing.done():
            room.dirty = True
            return
        room.refreshing = asyncio.create_task(self._run_refresh(room, push))

    async def _run_refresh(self, room: _Room, push: bool) -> None:
        while True:
            room.dirty = False
            try:
                self.loads += 1
                state = await self._load(room.code)
            except Exception as exc:  # noqa: BLE001 - keep the last state; the resync tries again
                log.warning("queue display: reading room %s failed: %s", room.code, exc)
                room.updated.set()
                return
            if room.last_call is not None:
                state["last_call"] = room.last_call
            if push or state != room.state:
                room.state = state
                for q in room.displays:
                    q.put_nowait(state)
            room.updated.set()
            if not room.dirty:
                return

    # ------------------------------------------------------------------ displays
    def reserve(self, code: str) -> Callable[[], None]:
        """Take one stream slot for ``code`` (raises :class:`DisplaysFull`); returns its release, which
        may be called more than once."""
        if self._streams >= self.max_streams:
            raise DisplaysFull(f"this server already streams to {self._streams} displays (the limit)")
        if self._per_room.get(code, 0) >= self.max_per_room:
            raise DisplaysFull(f"room {code} already has {self.max_per_room} displays (the limit)")
        self._streams += 1
        self._per_room[code] = self._per_room.get(code, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._streams -= 1
            left = self._per_room[code] - 1
            if left:
                self._per_room[code] = left
            else:
                del self._per_room[code]

        return release

    def streams(self) -> int:
        return self._streams

    async def watch(self, code: str) -> AsyncIterator[dict[str, Any] | None]:
        """The room's current state, then every new one; ``None`` when nothing changed for a keep-alive
        period. Ends when the consumer stops iterating (the display disconnected)."""
        room = self._rooms.get(code)
        if room is None:
            room = self._rooms[code] = _Room(code)
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        room.displays.add(q)
        try:
            if room.state is None:
                if room.refreshing is None:
                    self._refresh(room, push=False)
                await room.updated.wait()
            last = room.state
            if last is not None:
                yield last
            while True:
                try:
                    state = await asyncio.wait_for(q.get(), self.keepalive_seconds)
                except TimeoutError:
                    yield None
                    continue
                while not q.empty():  # a slow display skips to the newest state
                    state = q.get_nowait()
                if state is not last:  # (the first load is also queued to those who waited for it)
                    last = state
                    yield state
        finally:
            room.displays.discard(q)
            if not room.displays and self._rooms.get(code) is room:
                del self._rooms[code]
                if room.refreshing is not None and not room.refreshing.done():
                    room.refreshing.cancel()

    def watched(self) -> dict[str, int]:
        return {code: len(room.displays) for code, room in self._rooms.items()}

    # ------------------------------------------------------------------ serve-side task
    async def run(self, stop: asyncio.Event, nc: Any = None) -> None:
        """Subscribe to the ticket events on NATS and resync the watched rooms now and then, until
        ``stop``."""
        subs = []
        if nc is not None:

            async def on_msg(msg: Any) -> None:
                headers = msg.headers or {}
                try:
                    self.on_event(
                        msg.subject, headers.get("Hospital-Event-Id") or headers.get("Nats-Msg-Id"), msg.data
                    )
                except Exception as exc:  # noqa: BLE001 - a bad message must not stop the feed
                    log.warning("queue display: ignoring %s: %s", msg.subject, exc)

            for subject in SUBJECTS:
                subs.append(await nc.subscribe(subject, cb=on_msg))
        epoch = connection_epoch(nc) if nc is not None else 0
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), self.resync_seconds)
                except TimeoutError:
                    if nc is not None and connection_epoch(nc) != epoch and nc.is_connected:
                        # the connection was closed and re-established (ADR 0007): its subscriptions are gone
                        epoch = connection_epoch(nc)
                        subs = [await nc.subscribe(subject, cb=on_msg) for subject in SUBJECTS]
                    for room in list(self._rooms.values()):  # pushed to the displays only if it changed
                        self._refresh(room, push=False)
        finally:
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001, S110 - the connection may be draining already
                    pass


def sse(state: dict[str, Any] | None) -> str:
    if state is None:
        return ": keep-alive\n\n"
    return f"event: queue\ndata: {json.dumps(state, ensure_ascii=False)}\n\n"
