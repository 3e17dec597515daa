"""Database access: SQLAlchemy 2 async over SQLite (default, zero set-up) or PostgreSQL.

The chassis owns three tables that every service database has (created by the service's first
migration through :func:`hospital.chassis.migrations.create_chassis_tables`):

* ``outbox``: events written in the same transaction as the state change they describe;
* ``outbox_deadletter``: outbox rows that can never be published, set aside by the relay;
* ``inbox``: event ids a consumer has applied, written in the same transaction as the effect;
* ``audit_log`` / ``audit_head``: the hash-chained audit trail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

chassis_metadata = MetaData()
AUDIT_KEYRING = "hospital.audit_keyring"  # session.info key: the database's audit keyring
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores no zone: UTC is written and
    restored on read; naive datetimes are refused so local times never sneak in)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


outbox_table = Table(
    "outbox",
    chassis_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False),  # a UUIDv7; JetStream deduplicates on it
    Column("subject", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # Rows leave the table once JetStream has them (the relay deletes them), so the primary key is the
    # only index an insert has to maintain. published_at stays NULL; it is kept so that
    # `WHERE published_at IS NULL` reads the same as before deletion-on-publish.
    Column("published_at", UtcDateTime(), nullable=True),
)

# Outbox rows that can never be published (larger than the NATS server's max_payload, refused by the
# stream for good): the relay moves them here, with the reason, so the rows behind them keep flowing.
# An operator lists and replays them (``python -m hospital.<svc> outbox-deadletters``); ADR 0007.
outbox_deadletter_table = Table(
    "outbox_deadletter",
    chassis_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("subject", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("dead_at", UtcDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("size", BigInteger, nullable=False),  # bytes the server counts (headers + payload)
)

inbox_table = Table(
    "inbox",
    chassis_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(100), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("handled_at", UtcDateTime(), nullable=False),
)

audit_log_table = Table(
    "audit_log",
    chassis_metadata,
    Column("chain", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigId, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("actor_roles", String(300), nullable=False),
    Column("action", String(100), nullable=False),
    Column("patient_id", String(36), nullable=True, index=True),
    Column("resource_type", String(100), nullable=False),
    Column("resource_id", String(100), nullable=True),
    Column("source", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # The audit key that MACed the record (hospital.chassis.audit.key_id_of); NULL: a scheme-1 record
    # (plain SHA-256) written before the trail was keyed.
    Column("key_id", String(16), nullable=True),
    # Purpose of use (HL7 v3 PurposeOfUse code: TREAT, ETREAT, HPAYMT, HOPERAT...): the X-Purpose-Of-Use
    # header, else the caller's role's default (hospital.chassis.purpose). Scheme-2 records only.
    Column("purpose", String(20), nullable=True),
)

audit_head_table = Table(
    "audit_head",
    chassis_metadata,
    Column("id", Integer, primary_key=True),
    Column("last_seq", BigId, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("head_mac", String(100), nullable=True),  # "<key id>:<HMAC of id, last_seq, last_hash>"
)


counters_table = Table(
    "counters",
    chassis_metadata,
    Column("scope", String(100), primary_key=True),
    Column("value", BigId, nullable=False),
)


def sequence_name(name: str) -> str:
    return "seq_" + "".join(ch if ch.isalnum() else "_" for ch in name)


async def sequence_next(session: Any, name: str) -> int:
    """A unique number that need not be gap-free (patient codes, specimen ids): on PostgreSQL a sequence
    (created by a migration with :func:`hospital.chassis.migrations.create_sequence`), which takes no
    lock, so concurrent transactions never wait for each other (a rollback leaves a gap); elsewhere a
    :func:`next_value` counter."""
    if session.bind.dialect.name != "postgresql":
        return await next_value(session, f"seq:{name}")
    return int((await session.execute(text(f"SELECT nextval('{sequence_name(name)}')"))).scalar_one())


async def next_value(session: Any, scope: str) -> int:
    """The next number of a named counter (patient codes, queue tickets, invoice numbers...).

    One atomic upsert: the row stays locked until the caller's transaction ends, so concurrent callers
    queue, numbers are never duplicated, and a rolled-back transaction gives its number back (no gaps).
    """
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    stmt = upsert(counters_table).values(scope=scope, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["scope"], set_={"value": counters_table.c.value + 1})
    return int((await session.execute(stmt.returning(counters_table.c.value))).scalar_one())


class Database:
    """An async engine and session factory. SQLite runs in WAL mode with full fsync and takes the
    write lock at BEGIN (``BEGIN IMMEDIATE``) so concurrent writers queue instead of deadlocking."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, audit_keyring: Any = None
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # No pre-ping (it costs three round trips per checkout); a dead connection fails its statement,
            # is discarded by the pool, and the request's transaction is retried by the client.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self.audit_keyring = audit_keyring

    @property
    def audit_keyring(self) -> Any:
        """The :class:`hospital.chassis.audit.AuditKeyring` that audit appends and checks in this
        database's sessions use (each session carries it in ``session.info``)."""
        return self._audit_keyring

    @audit_keyring.setter
    def audit_keyring(self, keyring: Any) -> None:
        self._audit_keyring = keyring
        self.sessionmaker.configure(info={AUDIT_KEYRING: keyring} if keyring is not None else {})

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


async def driver_connection(session: AsyncSession | AsyncConnection) -> Any:
    """The asyncpg connection under ``session``'s transaction (PostgreSQL only), with that transaction
    begun, for hot paths that send array statements straight to the driver: they commit or roll back with
    the session. SQLAlchemy's asyncpg adapter begins its transaction at the first statement; when none
    has run yet it is begun here."""
    conn = await session.connection() if isinstance(session, AsyncSession) else session
    fairy = await conn.get_raw_connection()
    driver = fairy.driver_connection
    if not driver.is_in_transaction():
        adapted = fairy.dbapi_connection
        start = getattr(adapted, "_start_transaction", None)
        if start is not None and not getattr(adapted, "_started", True):
            await start()
        else:
            await conn.execute(text("SELECT 1"))
    return driver


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
