"""Wiring: the web service definition for the chassis runner."""

from __future__ import annotations

from pathlib import Path

from hospital.chassis.app import Components, Runtime, ServiceDefinition
from hospital.web.adapters.backends import Backends
from hospital.web.adapters.tables import metadata
from hospital.web.api.deps import Web
from hospital.web.api.http import build_http
from hospital.web.app.accounts import Accounts
from hospital.web.app.once import Once
from hospital.web.app.tokens import TokenMinter
from hospital.web.config import WebSettings


def build(rt: Runtime[WebSettings]) -> Components:
    s = rt.settings
    state = Web(
        settings=s,
        accounts=Accounts(rt, s),
        backends=Backends(s),
        tokens=TokenMinter(s),
        once=Once(),
        nc=rt.nc,
        identity=rt.identity,
    )
    rt.extras["web"] = state
    return Components(http=build_http(state), on_stop=state.backends.close)


DEFINITION = ServiceDefinition(
    name="web",
    settings_cls=WebSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    metadata=metadata,
    build=build,
)
