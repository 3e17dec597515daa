"""The chassis's HTTP guard on a real uvicorn server: bounded, clean text fields (422 naming the field),
the request body limit (413 problem JSON), control characters in the path or query (400), a generic 401,
and an unexpected error answered as problem JSON 500 on a connection that stays open."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from hospital.chassis.fields import Count, Real, ShortText, Text, code
from hospital.chassis.security import AuthError
from hospital.chassis.settings import ServiceSettings
from hospital.chassis.web import (
    hide_api_docs,
    install_error_handlers,
    install_ops_endpoints,
    install_request_guard,
)
from hospital.testing.servers import free_port


class Note(BaseModel):
    name: ShortText
    body: Text | None = None
    ref: code(10) | None = None
    value: Real | None = None


def build() -> FastAPI:
    app = FastAPI()

    @app.post("/notes")
    async def notes(note: Note) -> dict[str, object]:
        return note.model_dump()

    @app.get("/items")
    async def items(limit: Count = 10) -> dict[str, int]:  # (a Query() default would drop the bounds)
        return {"limit": limit}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/private")
    async def private() -> None:
        raise AuthError("malformed token: Not enough segments (jwt.exceptions.DecodeError)")

    @app.post("/big")
    async def big(note: Note) -> dict[str, int]:
        return {"ok": 1}

    app.state.body_limits = {"/big": 4 * 1024 * 1024}
    install_error_handlers(app)
    install_request_guard(app, max_body=64 * 1024)
    return app


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build(), host="127.0.0.1", port=port, log_config=None, lifespan="off", http="httptools"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_text_fields_are_bounded_and_clean(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        decomposed = unicodedata.normalize("NFD", "Nguyễn Văn An")
        r = await c.post(
            "/notes", json={"name": f"  {decomposed} \t  ", "body": " dòng 1\r\ndòng 2 ", "ref": " K80 "}
        )
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "Nguyễn Văn An" and r.json()["body"] == "dòng 1\ndòng 2"
        assert r.json()["ref"] == "K80"
        cases = [
            ({"name": "x" * 201}, "name", "at most 200"),
            ({"name": "An\x00"}, "name", "control character"),
            ({"name": "An", "body": "a\x00b"}, "body", "U+0000"),
            ({"name": "An", "ref": "12345678901"}, "ref", "at most 10"),
            ({"name": "An", "body": "x" * 2001}, "body", "at most 2000"),
        ]
        for body, field, text in cases:
            r = await c.post("/notes", json=body)
            assert r.status_code == 422, body
            problem = r.json()
            assert problem["code"] == "request.invalid" and problem["errors"][0]["field"] == field, problem
            assert text in problem["detail"], problem
        # A lone surrogate is valid JSON but cannot be stored or sent on as UTF-8.
        r = await c.post(
            "/notes", content=b'{"name": "An \\ud800"}', headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
        assert "surrogate" in r.json()["detail"]
        for value in ("NaN", "Infinity", "-Infinity"):
            r = await c.post(
                "/notes",
                content=f'{{"name": "An", "value": {value}}}'.encode(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "value", r.text


async def test_integer_query_parameters_are_bounded(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        for value in ("99999999999999999999999", "-1", "2147483648"):
            r = await c.get("/items", params={"limit": value})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit", r.text
        assert (await c.get("/items", params={"limit": "2147483647"})).json() == {"limit": 2147483647}


async def test_body_limit_answers_413_problem(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        big = json.dumps({"name": "An", "body": "x" * (70 * 1024)}).encode()
        r = await c.post("/notes", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "request.too_large" and r.json()["max_bytes"] == 64 * 1024

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b" " * 8192
            yield b'{"name": "An"}'

        r = await c.post("/notes", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "request.too_large"
        # A route that declares its own limit takes more.
        r = await c.post("/big", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"  # too long a Text, not 413


async def test_control_characters_in_path_or_query(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        for url in ("/items?limit=1%00", "/notes%00x", "/items?q=a%0Ab"):
            r = await c.get(url)
            assert r.status_code == 400 and r.json()["code"] == "request.control_character", url


async def test_401_names_no_internals(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        r = await c.get("/private")
    assert r.status_code == 401 and r.json()["detail"] == "invalid token"
    assert "jwt" not in r.text and "segments" not in r.text


async def test_unexpected_error_is_problem_json_and_keeps_the_connection(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))

    async def get(path: str) -> tuple[bytes, bytes]:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head, await reader.readexactly(length)

    head, body = await get("/boom")
    assert head.startswith(b"HTTP/1.1 500") and b"application/problem+json" in head
    problem = json.loads(body)
    assert (
        problem["code"] == "internal"
        and "hunter2" not in body.decode()
        and "RuntimeError" not in body.decode()
    )
    head, body = await get("/items?limit=3")  # the same connection still answers
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"limit": 3}
    writer.close()


async def test_ops_endpoints_and_api_docs() -> None:
    async def ready() -> dict[str, str]:
        return {"database": "ok"}

    def app(metrics_access: str, docs: bool) -> FastAPI:
        a = FastAPI()
        install_error_handlers(a)
        install_ops_endpoints(a, ready, metrics_access=metrics_access)
        if not docs:
            hide_api_docs(a)
        return a

    async def get(a: FastAPI, peer: str, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=a, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            return await c.get(path)

    open_app, closed_app = app("open", True), app("loopback", False)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert (await get(open_app, "10.20.0.7", path)).status_code == 200, path
    for path in ("/healthz", "/readyz"):  # probes need no token, from anywhere
        assert (await get(closed_app, "10.20.0.7", path)).status_code == 200, path
    assert (await get(closed_app, "10.20.0.7", "/metrics")).status_code == 404
    assert (await get(closed_app, "127.0.0.1", "/metrics")).status_code == 200
    for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
        assert (await get(closed_app, "127.0.0.1", path)).status_code == 404, path


def test_api_docs_default_off_in_production() -> None:
    assert ServiceSettings(environment="test").api_docs_served
    assert not ServiceSettings(environment="test", api_docs=False).api_docs_served
