"""PostgreSQL fast path for gateway callbacks (VNPay, MoMo): a small pool of raw asyncpg connections
and the two statements a callback needs (see docs/adr/0201-billing-callback-fast-path.md).

1. ``READ``: the stored outcome of ``(provider, provider_txn_id)`` and the invoice named by the
   callback, in one round trip (autocommit, no lock).
2. ``SETTLE_PAID`` / ``RECORD_*``: one statement, hence one transaction, that writes the decision
   only if the invoice is still in the state the decision was made on (compare-and-set on status,
   paid, refunded and patient amount): the invoice update, the callback row, the payment and the
   outbox row are data-modifying CTEs chained so that each happens only if the previous one did. A
   concurrent writer of the invoice (another callback, a charge, a desk payment) holds the row lock;
   PostgreSQL re-checks the condition on the row it committed, the update matches nothing, and the
   caller falls back to the locking path of ADR 0200. If the callback row already exists when the
   statement inserts it (a duplicate committed in between), the statement divides by zero and is
   rolled back whole, so an invoice can never be updated without its callback and payment rows.

Statements are prepared once per connection by asyncpg's statement cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

_CB = (
    "id, provider, provider_txn_id, invoice_number, invoice_id, amount, outcome, reply_code, payment_id, "
    "description, bank_reference, occurred_at, raw, received_at, resolved_by"
)

READ = """
SELECT c.outcome, c.reply_code, c.payment_id,
       i.id AS inv_id, i.number, i.status, i.patient_amount, i.paid_amount, i.refunded_amount, i.issued_at,
       i.voided_at
FROM (SELECT 1) AS one
LEFT JOIN provider_callbacks c ON c.provider = $1 AND c.provider_txn_id = $2
LEFT JOIN invoices i ON i.number = $3
"""

# $1 invoice id, $2 new paid, $3 new status, $4 old status, $5 old paid, $6 old patient amount,
# $7 old refunded; callback $8 id, $9 provider, $10 txn, $11 invoice number, $12 amount, $13 reply,
# $14 payment id, $15 description, $16 occurred_at, $17 raw JSON, $18 received_at;
# payment $19 kind, $20 method, $21 received_by; outbox $22 id, $23 subject, $24 type, $25 payload,
# $26 headers JSON.
SETTLE_PAID = f"""
WITH upd AS (
  UPDATE invoices SET paid_amount = $2::bigint, status = $3::varchar
  WHERE id = $1::varchar AND status = $4::varchar AND paid_amount = $5::bigint AND patient_amount = $6::bigint
    AND refunded_amount = $7::bigint
    AND NOT EXISTS (SELECT 1 FROM provider_callbacks
                    WHERE provider = $9::varchar AND provider_txn_id = $10::varchar)
  RETURNING id),
cb AS (
  INSERT INTO provider_callbacks ({_CB})
  SELECT $8::varchar, $9::varchar, $10::varchar, $11::varchar, $1::varchar, $12::bigint, 'paid', $13::varchar,
         $14::varchar, $15::varchar, NULL, $16::timestamptz, $17::json, $18::timestamptz, NULL FROM upd
  ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING id),
pay AS (
  INSERT INTO payments (id, invoice_id, kind, amount, method, provider, provider_txn_id, bank_reference,
                        shift_id, refund_of, reason, received_by, received_at, request_id)
  SELECT $14::varchar, $1::varchar, $19::varchar, $12::bigint, $20::varchar, $9::varchar, $10::varchar, NULL,
         NULL, NULL, NULL, $21::varchar, $18::timestamptz, NULL FROM cb
  RETURNING id),
ob AS (
  INSERT INTO outbox (id, subject, type, payload, headers, created_at)
  SELECT $22::varchar, $23::varchar, $24::varchar, $25::bytea, $26::json, $18::timestamptz FROM pay
  RETURNING id)
SELECT (SELECT count(*) FROM upd) / ((SELECT count(*) FROM ob) - (SELECT count(*) FROM upd) + 1) AS settled
"""

# A callback that pays nothing (failed, amount_mismatch, already_settled, unknown_invoice): recorded only
# if the invoice is still as read ($15..$19) or, without an invoice, still absent.
_RECORD = f"""
INSERT INTO provider_callbacks ({_CB})
SELECT $1::varchar, $2::varchar, $3::varchar, $4::varchar, $5::varchar, $6::bigint, $7::varchar, $8::varchar,
       NULL, $9::varchar, $10::varchar, $11::timestamptz, $12::json, $13::timestamptz, NULL
WHERE {{guard}}
ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING id
"""
RECORD_WITH_INVOICE = _RECORD.format(
    guard=(
        "EXISTS (SELECT 1 FROM invoices WHERE id = $5::varchar AND status = $14::varchar "
        "AND paid_amount = $15::bigint AND patient_amount = $16::bigint AND refunded_amount = $17::bigint)"
    )
)
RECORD_WITHOUT_INVOICE = _RECORD.format(
    guard="NOT EXISTS (SELECT 1 FROM invoices WHERE number = $4::varchar)"
)


def asyncpg_dsn(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class LeanPool:
    """At most ``size`` raw asyncpg connections, reused; a broken one is dropped and replaced lazily."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn, self.size = dsn, size
        self._sem = asyncio.Semaphore(size)
        self._idle: list[asyncpg.Connection] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        await self._sem.acquire()
        conn = None
        ok = False
        try:
            conn = self._idle.pop() if self._idle else await asyncpg.connect(self.dsn)
            yield conn
            ok = True
        finally:
            if conn is not None:
                if (ok or _healthy(conn)) and not self._closed and not conn.is_closed():
                    self._idle.append(conn)
                else:
                    conn.terminate()
            self._sem.release()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:  # noqa: BLE001 - closing anyway
                conn.terminate()


def _healthy(conn: Any) -> bool:
    """After an exception: keep the connection only if it is idle (the statement failed cleanly)."""
    try:
        return not conn.is_closed() and not conn.is_in_transaction()
    except Exception:  # noqa: BLE001
        return False
