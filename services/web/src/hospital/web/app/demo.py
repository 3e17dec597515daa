"""``python -m hospital.web demo-users``: one user per role, named after the role, for the local stack."""

from __future__ import annotations

import sys

from hospital.chassis import aio
from hospital.chassis.app import Runtime
from hospital.chassis.audit import keyring_for, seal_unkeyed_chains
from hospital.chassis.db import Database
from hospital.chassis.security import ServiceIdentity, verifier_for
from hospital.web.app.accounts import Accounts
from hospital.web.config import WebSettings


async def ensure(settings: WebSettings) -> list[str]:
    db = Database(settings.database_url, audit_keyring=keyring_for(settings))
    async with db.session() as session:
        await seal_unkeyed_chains(session)
    rt = Runtime(
        settings=settings, db=db, verifier=verifier_for(settings), identity=ServiceIdentity(settings)
    )
    try:
        return await Accounts(rt, settings).ensure_demo_users(settings.demo_password)
    finally:
        await db.dispose()


def main() -> int:
    settings = WebSettings()
    if settings.environment == "production":
        print("demo users are for development and test stacks only", file=sys.stderr)
        return 2
    if not settings.demo_password:
        print("set HOSPITAL_WEB_DEMO_PASSWORD", file=sys.stderr)
        return 2
    names = aio.run(ensure(settings))
    print(" ".join(names))
    return 0
