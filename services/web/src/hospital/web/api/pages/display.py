"""Waiting-room display: the live queue of one clinic room in large type, updated without reloading.

The browser holds one Server-Sent Events stream to the web; the web holds one gRPC stream (WatchQueue) to
admissions per display and sends each new state as a rendered fragment. When admissions is unreachable the
display says so and the web tries again, so the screen comes back by itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, env, lang, render, screen, token, web
from hospital.web.i18n import translate

router = APIRouter(prefix="/display", tags=["waiting-room display"])
Display = Annotated[WebSession, screen("display")]
RETRY_SECONDS = 2.0
KEEPALIVE_SECONDS = 15.0


@router.get("", response_class=HTMLResponse, summary="Choose the room to display")
async def choose(request: Request, sess: Display) -> Response:
    rooms, down = [], None
    try:
        rooms = await web(request).backends.admissions.rooms(token(request, sess))
    except BackendUnavailable as exc:
        down = exc.service
    return render(request, "display_choose.html", rooms=rooms, down=down)


@router.get("/{room}", response_class=HTMLResponse, summary="The display of one room (full screen)")
async def show(request: Request, sess: Display, room: str) -> Response:
    return render(request, "display.html", room=room)


def _event(html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: queue\n{data}\n\n"


@router.get("/{room}/stream", summary="Server-Sent Events: the room's queue as HTML fragments")
async def stream(request: Request, sess: Display, room: str) -> StreamingResponse:
    w, language = web(request), lang(request)

    def t(key: str, **values: object) -> str:
        return translate(key, language, **values)

    fragment = env.get_template("display/_queue.html")

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            feed = w.backends.admissions.watch_queue(room, token(request, sess)).__aiter__()
            try:
                while True:
                    try:
                        state = await asyncio.wait_for(feed.__anext__(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    except StopAsyncIteration:
                        break
                    yield _event(
                        fragment.render(
                            t=t,
                            state=state,
                            down=None,
                            room=room,
                            state_json=json.dumps({"now": state.now_serving}),
                        )
                    )
            except BackendUnavailable as exc:
                yield _event(fragment.render(t=t, state=None, down=exc.service, room=room, state_json="{}"))
            except BackendRefused as exc:
                yield _event(fragment.render(t=t, state=None, down=exc.service, room=room, state_json="{}"))
            finally:
                await feed.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(RETRY_SECONDS)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
