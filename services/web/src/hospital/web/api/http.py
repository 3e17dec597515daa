"""The web's HTTP app: server-rendered pages (Jinja2 + htmx), its own static assets, security headers."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from hospital.web.api.deps import (
    HERE,
    CsrfRefused,
    Forbidden,
    NotSignedIn,
    PasswordChangeRequired,
    Web,
    render,
)
from hospital.web.api.pages import (
    admin,
    admin_config,
    audit,
    auth,
    cashier,
    display,
    doctor,
    imaging,
    lab,
    reception,
    viewer,
    ward,
)

# Everything comes from this origin: no CDN, no inline script; htmx's inline indicator style is disabled.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def build_http(state: Web) -> FastAPI:
    app = FastAPI(
        title="Web front end",
        version="1.0",
        description="The clinicians' screens (HTML) and their backend-for-frontend. Browsers sign in "
        "with a username and password; the web calls the other services over gRPC.",
    )
    app.state.web = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (
        auth.router,
        reception.router,
        display.router,
        lab.router,
        cashier.router,
        doctor.router,
        viewer.router,
        ward.router,
        imaging.router,
        admin.router,
        admin_config.router,
        audit.router,
    ):
        app.include_router(router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.url.path.startswith("/static/"):
            h["Cache-Control"] = "public, max-age=86400"
        return response

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _: NotSignedIn) -> Response:
        target = "/login?next=" + quote(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(PasswordChangeRequired)
    async def _must_change(request: Request, _: PasswordChangeRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/password"})
        if request.method not in ("GET", "HEAD"):
            return render(
                request,
                "error.html",
                status=403,
                title_key="pwchange.title",
                body_key="pwchange.first",
                role_key="",
            )
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return render(
            request,
            "error.html",
            status=403,
            title_key="forbidden.title",
            body_key="forbidden.body",
            role_key=f"role.{exc.role}",
        )

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return render(
            request, "error.html", status=403, title_key="csrf.title", body_key="csrf.body", role_key=""
        )

    return app
