"""Waiting-room display: the live queue of one clinic room in large type, updated without reloading.

The browser holds one Server-Sent Events stream to the web; the web holds one gRPC stream (WatchQueue) to
admissions per display and sends each new state as a rendered fragment. When admissions is unreachable the
display says so and the web tries again, so the screen comes back by itself.

Two ways in: staff signed in (``/display/{room}``), or a waiting-room TV with a signed display link that
staff create here (``/display/queue/{room}?exp=…&sig=…``, no sign-in): admissions signs and checks the link
(room + expiry), the web only relays it with its own service identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, env, lang, render, screen, token, web

router = APIRouter(prefix="/display", tags=["waiting-room display"])
Display = Annotated[WebSession, screen("display")]
RETRY_SECONDS = 2.0
KEEPALIVE_SECONDS = 15.0
LINK_DAYS = 180
Exp = Annotated[int, Query(ge=0, le=2**40)]
Sig = Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")]


@router.get("", response_class=HTMLResponse, summary="Choose the room to display")
async def choose(request: Request, sess: Display) -> Response:
    rooms, down = [], None
    try:
        rooms = await web(request).backends.admissions.rooms(token(request, sess))
    except BackendUnavailable as exc:
        down = exc.service
    return render(
        request,
        "display_choose.html",
        rooms=rooms,
        down=down,
        may_link=sess.user.role in ("receptionist", "nurse", "admin"),
    )


@router.post(
    "/{room}/link", response_class=HTMLResponse, summary="A signed link for a waiting-room TV (fragment)"
)
async def link(
    request: Request, sess: Display, room: str, valid_days: Annotated[int, Form()] = LINK_DAYS
) -> Response:
    try:
        made = await web(request).backends.admissions.display_link(room, valid_days, token(request, sess))
    except BackendUnavailable as exc:
        return render(request, "_unavailable.html", service=exc.service)
    except BackendRefused as exc:
        return render(request, "reception/_scan_error.html", status=422, message=exc.message)
    path = f"/display/queue/{quote(room, safe='')}?exp={made.exp}&sig={made.sig}"
    url = str(request.base_url).rstrip("/") + path
    return render(
        request,
        "display/_link.html",
        room=room,
        url=url,
        path=path,
        expires=made.expires_at.ToDatetime().date().strftime("%d/%m/%Y"),
    )


@router.get("/{room}", response_class=HTMLResponse, summary="The display of one room (staff, full screen)")
async def show(request: Request, sess: Display, room: str) -> Response:
    return render(request, "display.html", room=room, stream=f"/display/{quote(room, safe='')}/stream")


@router.get("/queue/{room}", response_class=HTMLResponse, summary="A waiting-room TV's display (signed link)")
async def show_signed(request: Request, room: str, exp: Exp = 0, sig: Sig = "") -> Response:
    return render(
        request,
        "display.html",
        room=room,
        stream=f"/display/queue/{quote(room, safe='')}/stream?exp={exp}&sig={sig}",
    )


def _event(html: str) -> str:
    data = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: queue\n{data}\n\n"


def _stream(
    request: Request, room: str, tok: Callable[[], str], exp: int = 0, sig: str = ""
) -> StreamingResponse:
    w, language = web(request), lang(request)

    def t(key: str, **values: object) -> str:
        return i18n.translate(key, language, **values)

    fragment = env.get_template("display/_queue.html")

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            feed = w.backends.admissions.watch_queue(room, tok(), exp, sig).__aiter__()
            try:
                while True:
                    try:
                        state = await asyncio.wait_for(feed.__anext__(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    except StopAsyncIteration:
                        break
                    yield _event(fragment.render(t=t, state=state, down=None, refused=None, room=room))
            except BackendUnavailable as exc:
                yield _event(fragment.render(t=t, state=None, down=exc.service, refused=None, room=room))
            except BackendRefused as exc:
                # a bad or expired link, an unknown room: said on screen; the browser asks again later
                refused = (
                    "disp.link_" + exc.code.removeprefix("display_link.")
                    if exc.code.startswith("display_link.")
                    else "disp.room_unknown"
                )
                yield "retry: 60000\n\n"
                yield _event(fragment.render(t=t, state=None, down=None, refused=refused, room=room))
                return
            finally:
                await feed.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(RETRY_SECONDS)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{room}/stream", summary="Server-Sent Events: the room's queue as HTML fragments (staff)")
async def stream(request: Request, sess: Display, room: str) -> StreamingResponse:
    return _stream(request, room, lambda: token(request, sess))


@router.get("/queue/{room}/stream", summary="Server-Sent Events for a signed display link")
async def stream_signed(request: Request, room: str, exp: Exp = 0, sig: Sig = "") -> StreamingResponse:
    return _stream(request, room, web(request).identity.token, exp, sig)
