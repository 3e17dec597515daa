"""SQL of the web's own tables (users, sessions). Functions take the unit of work's session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.web.adapters.tables import sessions, users

Row = dict[str, Any]


async def user_by_name(s: AsyncSession, username: str) -> Row | None:
    row = (await s.execute(select(users).where(users.c.username == username))).mappings().first()
    return dict(row) if row else None


async def user_by_id(s: AsyncSession, user_id: str) -> Row | None:
    row = (await s.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return dict(row) if row else None


async def list_users(s: AsyncSession) -> list[Row]:
    rows = (await s.execute(select(users).order_by(users.c.role, users.c.username))).mappings()
    return [dict(r) for r in rows]


async def insert_user(s: AsyncSession, row: Row) -> None:
    await s.execute(users.insert().values(**row))


async def update_user(s: AsyncSession, user_id: str, **values: Any) -> None:
    await s.execute(update(users).where(users.c.id == user_id).values(**values))


async def insert_session(s: AsyncSession, row: Row) -> None:
    await s.execute(sessions.insert().values(**row))


async def live_session(s: AsyncSession, session_id: str, now: datetime) -> tuple[Row, Row] | None:
    """The session and its user, if the session has not ended or expired and the user is active."""
    row = (
        (
            await s.execute(
                select(
                    sessions,
                    users.c.username,
                    users.c.display_name,
                    users.c.role,
                    users.c.departments,
                    users.c.active,
                    users.c.must_change_password,
                )
                .join(users, users.c.id == sessions.c.user_id)
                .where(
                    sessions.c.id == session_id, sessions.c.ended_at.is_(None), sessions.c.expires_at > now
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None or not row["active"]:
        return None
    return dict(row), {
        "id": row["user_id"],
        "username": row["username"],
        "display_name": row["display_name"],
        "role": row["role"],
        "departments": row["departments"],
        "must_change_password": bool(row["must_change_password"]),
    }


async def touch_session(s: AsyncSession, session_id: str, now: datetime, expires_at: datetime) -> None:
    await s.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.ended_at.is_(None))
        .values(last_seen_at=now, expires_at=expires_at)
    )


async def end_session(s: AsyncSession, session_id: str, now: datetime) -> int:
    res = await s.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )
    return res.rowcount or 0


async def end_user_sessions(
    s: AsyncSession, user_id: str, now: datetime, keep_session_id: str | None = None
) -> int:
    cond = [sessions.c.user_id == user_id, sessions.c.ended_at.is_(None)]
    if keep_session_id:
        cond.append(sessions.c.id != keep_session_id)
    res = await s.execute(update(sessions).where(*cond).values(ended_at=now))
    return res.rowcount or 0


async def count_users(s: AsyncSession) -> int:
    return int((await s.execute(select(func.count()).select_from(users))).scalar_one())
