"""The web's own database: its users (local accounts) and their browser sessions."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table

from hospital.chassis.db import UtcDateTime

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(100), nullable=False, unique=True),  # lower case
    Column("display_name", String(200), nullable=False),
    Column("role", String(40), nullable=False),
    Column("departments", String(200), nullable=False, server_default=""),  # codes, comma-separated
    Column("password_hash", String(200), nullable=False),  # argon2id, parameters in the hash
    Column("active", Boolean, nullable=False),
    Column("failed_attempts", Integer, nullable=False),  # consecutive wrong passwords
    Column("locked_until", UtcDateTime(), nullable=True),
    Column("must_change_password", Boolean, nullable=False),
    Column("password_changed_at", UtcDateTime(), nullable=False),
    Column("last_login_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the cookie's random value: a copy of the table does not yield usable cookies
    Column("id", String(64), primary_key=True),
    Column("user_id", String(36), nullable=False),  # users.id
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
    Column("client", String(200), nullable=False),
    Index("ix_sessions_user", "user_id"),
)
