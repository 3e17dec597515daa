"""Append-only, keyed, hash-chained audit trail: who did what, to which patient's record, when, from where.

Each record carries a MAC (HMAC-SHA256 with the service's audit key, which lives outside the database:
a secret file, or in development a key the local stack creates under ``<data_dir>/auth``) over its
content and the previous record's MAC, so editing, deleting or reordering any record breaks the chain
from that point on, and nobody without the key can recompute it. ``audit_head`` holds each chain's last
sequence and MAC, itself MACed (``head_mac``), so cutting records off the end is detected too; a writer
checks the head's MAC before it extends a chain. On PostgreSQL a trigger also refuses UPDATE and DELETE.

Versions: records written before the trail was keyed (``key_id`` NULL, scheme 1) carry a plain SHA-256
and still verify; they may only come before a chain's first keyed record, and the first start with a key
seals every chain's head (:func:`seal_unkeyed_chains`), so they cannot be rewritten either. Keyed records
name their key (``key_id``, a fingerprint), so a key can be replaced while older records still verify
with the previous key (``audit_previous_key_files``). See docs/adr/0004-security-and-audit.md.

There are :data:`CHAINS` independent chains; a transaction appends to one of them (picked at random),
so concurrent transactions rarely wait for each other's commit on the chain's head row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hospital.chassis.db import AUDIT_KEYRING, audit_head_table, audit_log_table, utcnow
from hospital.chassis.ids import new_id
from hospital.chassis.purpose import default_for as purpose_default
from hospital.chassis.settings import ServiceSettings

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CHAINS = 16
MIN_KEY_BYTES = 32
_RECORD_V2 = b"hospital-audit-record-v2\n"
_HEAD_V2 = b"hospital-audit-head-v2\n"
_PLACEHOLDER_MARKERS = (b"dev-", b"changeme", b"change-me", b"secret", b"placeholder")


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str  # e.g. "patient.read", "patient.register", "visit.open"
    resource_type: str
    resource_id: str | None = None
    patient_id: str | None = None
    actor_roles: tuple[str, ...] = ()
    source: str = ""  # client address, or the calling service
    detail: dict[str, Any] = field(default_factory=dict)
    purpose: str = ""  # purpose of use (HL7 PurposeOfUse code: TREAT, HPAYMT...; hospital.chassis.purpose)
    at: datetime = field(default_factory=utcnow)
    id: str = field(default_factory=new_id)


class AuditKeyError(RuntimeError):
    """No usable audit key (missing, too short, a placeholder)."""


class AuditChainBroken(RuntimeError):
    """A chain's head does not verify: it was changed without the key. Nothing is appended to it."""


def key_id_of(key: bytes) -> str:
    """A key's public name: a fingerprint that tells which key made a MAC without revealing it."""
    return "k" + hashlib.sha256(b"hospital-audit-key-id\n" + key).hexdigest()[:15]


class AuditKeyring:
    """The current audit key (new records) and previous ones (older records still verify)."""

    def __init__(self, current: bytes, previous: Sequence[bytes] = ()) -> None:
        for key in (current, *previous):
            if len(key) < MIN_KEY_BYTES:
                raise AuditKeyError(f"an audit key must hold at least {MIN_KEY_BYTES} bytes")
        self.current_id = key_id_of(current)
        self._keys: dict[str, bytes] = {key_id_of(k): k for k in previous}
        self._keys[self.current_id] = current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def _key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise AuditKeyError(f"audit key {key_id} is not configured") from None

    def derive(self, purpose: bytes) -> bytes:
        """A key for another purpose derived from the current audit key (HMAC with a purpose label), so a
        service needs no second secret for, e.g., signed display links."""
        return hmac.new(
            self._keys[self.current_id], b"hospital-derived-key\n" + purpose, hashlib.sha256
        ).digest()

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def record_mac(self, canonical: bytes, key_id: str | None = None) -> str:
        return hmac.new(
            self._key(key_id or self.current_id), _RECORD_V2 + canonical, hashlib.sha256
        ).hexdigest()

    def head_mac(self, chain: int, seq: int, last_hash: str, key_id: str | None = None) -> str:
        """``<key id>:<HMAC of chain, last sequence and last hash>``, stored in ``audit_head.head_mac``."""
        kid = key_id or self.current_id
        mac = hmac.new(self._key(kid), _HEAD_V2 + f"{chain}\n{seq}\n{last_hash}".encode(), hashlib.sha256)
        return f"{kid}:{mac.hexdigest()}"

    def head_ok(self, chain: int, seq: int, last_hash: str, stored: str | None) -> bool:
        if not stored or ":" not in stored:
            return False
        kid = stored.split(":", 1)[0]
        if not self.knows(kid):
            return False
        return hmac.compare_digest(self.head_mac(chain, seq, last_hash, kid), stored)


def read_key_file(path: Path, *, production: bool) -> bytes:
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise AuditKeyError(f"audit key file {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"audit key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    if production and any(m in key.lower() for m in _PLACEHOLDER_MARKERS):
        raise AuditKeyError(f"audit key file {path} still holds a development placeholder")
    return key


def dev_key_file(data_dir: Path) -> Path:
    return Path(data_dir) / "auth" / "audit.key"


def ensure_dev_key(data_dir: Path) -> Path:
    """The local stack's audit key (created once, 32 random bytes as hex, mode 0600), beside the
    development token issuer's key pair. Development and tests only."""
    path = dev_key_file(data_dir)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # another process won the race: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path


def keyring_for(settings: ServiceSettings) -> AuditKeyring:
    """The audit keyring of a service's settings: ``audit_key_file`` (required in production), else
    the local stack's development key; ``audit_previous_key_files`` verify older records."""
    production = settings.environment == "production"
    if settings.audit_key_file:
        current = read_key_file(settings.audit_key_file, production=production)
    elif production:
        raise AuditKeyError("audit_key_file is required in production")
    else:
        current = read_key_file(ensure_dev_key(settings.data_dir), production=False)
    previous = [read_key_file(p, production=production) for p in settings.audit_previous_key_files]
    return AuditKeyring(current, previous)


def _keyring(session: AsyncSession, keyring: AuditKeyring | None) -> AuditKeyring:
    kr = keyring or session.info.get(AUDIT_KEYRING)
    if kr is None:
        raise AuditKeyError("no audit key configured for this database (Database(audit_keyring=...))")
    return kr


_V1_KEYS = (
    "chain",
    "seq",
    "id",
    "at",
    "actor",
    "actor_roles",
    "action",
    "patient_id",
    "resource_type",
    "resource_id",
    "source",
    "detail",
    "prev_hash",
)
_V2_KEYS = (*_V1_KEYS, "key_id", "purpose")


def _canonical(row: Mapping[str, Any], keys: Sequence[str]) -> bytes:
    doc = {k: row[k] for k in keys}
    doc["at"] = row["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def record_hash(row: Mapping[str, Any], keyring: AuditKeyring | None = None) -> str:
    """A record's hash: scheme 1 (``key_id`` NULL) a SHA-256 of its content, scheme 2 the HMAC with the
    key it names."""
    if row.get("key_id") is None:
        return hashlib.sha256(_canonical(row, _V1_KEYS)).hexdigest()
    if keyring is None:
        raise AuditKeyError("a keyed audit record needs the audit keyring")
    return keyring.record_mac(_canonical(row, _V2_KEYS), row["key_id"])


async def append_audit(
    session: AsyncSession, entries: Sequence[AuditEntry], keyring: AuditKeyring | None = None
) -> None:
    """Append entries to one chain inside the caller's transaction (its head row stays locked until
    the transaction ends). Refuses (:class:`AuditChainBroken`) to extend a chain whose head does not
    verify."""
    if not entries:
        return
    kr = _keyring(session, keyring)
    chain = random.randrange(CHAINS)
    h = audit_head_table.c
    head = (
        await session.execute(
            select(h.last_seq, h.last_hash, h.head_mac).where(h.id == chain).with_for_update()
        )
    ).one()
    check_head(kr, chain, head.last_seq, head.last_hash, head.head_mac)
    rows = audit_rows(chain, head.last_seq, head.last_hash, entries, kr)
    await session.execute(insert(audit_log_table), rows)
    await session.execute(
        update(audit_head_table)
        .where(h.id == chain)
        .values(
            last_seq=rows[-1]["seq"],
            last_hash=rows[-1]["hash"],
            head_mac=kr.head_mac(chain, rows[-1]["seq"], rows[-1]["hash"]),
        )
    )


def check_head(
    keyring: AuditKeyring, chain: int, last_seq: int, last_hash: str, head_mac: str | None
) -> None:
    if not keyring.head_ok(chain, last_seq, last_hash, head_mac):
        log.critical(
            "audit chain %s: head (seq %s) does not verify; refusing to extend it; run audit-verify",
            chain,
            last_seq,
        )
        raise AuditChainBroken(
            f"audit chain {chain}: head does not verify (altered, or sealed with an unknown key)"
        )


def audit_rows(
    chain: int, last_seq: int, last_hash: str, entries: Sequence[AuditEntry], keyring: AuditKeyring
) -> list[dict[str, Any]]:
    """The records that append ``entries`` to ``chain`` after its head (``last_seq``, ``last_hash``),
    each MACed over its content and its predecessor's MAC with the keyring's current key. For writers
    that append with their own statements (e.g. one guarded statement on the driver connection; they
    check the head first with :func:`check_head` and store :meth:`AuditKeyring.head_mac` of the new
    head); :func:`append_audit` uses it."""
    rows, seq, prev, kid = [], last_seq, last_hash, keyring.current_id
    for e in entries:
        seq += 1
        row = {
            "chain": chain,
            "seq": seq,
            "id": e.id,
            "at": e.at,
            "actor": e.actor,
            "actor_roles": ",".join(e.actor_roles),
            "action": e.action,
            "patient_id": e.patient_id,
            "resource_type": e.resource_type,
            "resource_id": e.resource_id,
            "source": e.source,
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True, default=str),
            "prev_hash": prev,
            "key_id": kid,
            "purpose": e.purpose or purpose_default(e.actor_roles),
        }
        row["hash"] = keyring.record_mac(_canonical(row, _V2_KEYS), kid)
        prev = row["hash"]
        rows.append(row)
    return rows


async def seal_unkeyed_chains(session: AsyncSession, keyring: AuditKeyring | None = None) -> int:
    """Seal the heads of a trail that has never been keyed (a new database, or one written before the
    trail was keyed): each head gets its MAC, so scheme-1 records can no longer be rewritten. Does
    nothing (returns 0) once any head or record is keyed: a head that lost its MAC afterwards is a
    tampering for ``audit-verify`` to report, not something to seal again. Commits."""
    kr = _keyring(session, keyring)
    h = audit_head_table.c
    heads = (await session.execute(select(h.id, h.last_seq, h.last_hash, h.head_mac).with_for_update())).all()
    keyed = (
        await session.execute(
            select(func.count()).select_from(audit_log_table).where(audit_log_table.c.key_id.is_not(None))
        )
    ).scalar_one()
    if keyed or any(r.head_mac for r in heads):
        await session.rollback()
        return 0
    for r in heads:
        await session.execute(
            update(audit_head_table)
            .where(h.id == r.id)
            .values(head_mac=kr.head_mac(r.id, r.last_seq, r.last_hash))
        )
    await session.commit()
    if any(r.last_seq for r in heads):
        log.warning(
            "audit trail sealed with key %s: %d chain(s) with records written before keying",
            kr.current_id,
            sum(1 for r in heads if r.last_seq),
        )
    return len(heads)


@dataclass
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""
    chain: int | None = None


async def verify_chain(
    session: AsyncSession, keyring: AuditKeyring | None = None, *, chunk: int = 5000
) -> ChainReport:
    """Recompute every chain from its first record with the audit keys; report the first record (or
    head) that does not fit."""
    kr = _keyring(session, keyring)
    checked = 0
    for chain in range(CHAINS):
        report = await _verify_one(session, kr, chain, chunk)
        checked += report.checked
        if not report.ok:
            report.checked = checked
            report.chain = chain
            return report
    return ChainReport(True, checked)


async def _verify_one(session: AsyncSession, kr: AuditKeyring, chain: int, chunk: int) -> ChainReport:
    prev, expected_seq, checked, last, keyed = GENESIS, 1, 0, 0, False
    log_ = audit_log_table
    while True:
        rows = (
            (
                await session.execute(
                    select(log_)
                    .where(log_.c.chain == chain, log_.c.seq >= expected_seq)
                    .order_by(log_.c.seq)
                    .limit(chunk)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            seq = row["seq"]
            if seq != expected_seq:
                return ChainReport(
                    False, checked, expected_seq, f"chain {chain}: record missing (sequence gap)"
                )
            if row["prev_hash"] != prev:
                return ChainReport(False, checked, seq, f"chain {chain}: previous-hash link broken")
            kid = row["key_id"]
            if kid is None and keyed:
                return ChainReport(False, checked, seq, f"chain {chain}: unkeyed record after keyed records")
            if kid is not None and not kr.knows(kid):
                return ChainReport(False, checked, seq, f"chain {chain}: record keyed with unknown key {kid}")
            if not hmac.compare_digest(record_hash(row, kr), row["hash"]):
                return ChainReport(
                    False, checked, seq, f"chain {chain}: record content does not match its hash"
                )
            keyed = keyed or kid is not None
            prev, last = row["hash"], seq
            expected_seq += 1
            checked += 1
    head = (await session.execute(select(audit_head_table).where(audit_head_table.c.id == chain))).one()
    if head.last_seq != last or head.last_hash != prev:
        return ChainReport(
            False, checked, last + 1, f"chain {chain}: records removed from the end of the chain"
        )
    if not kr.head_ok(chain, head.last_seq, head.last_hash, head.head_mac):
        return ChainReport(
            False,
            checked,
            last + 1,
            f"chain {chain}: chain head does not verify (head rewritten, or records removed from the end)",
        )
    return ChainReport(True, checked)


# --- Checkpoints outside the database ----------------------------------------------------------------
# A key does not stop someone who saved an older head row (with its valid MAC) from cutting a chain back
# to it. ``audit-verify --checkpoints FILE`` keeps the heads it verified in a file outside the database
# (one JSON line per run, MACed) and checks on every run that no chain has fallen behind, or changed
# at, a head it saw before.

_CHECKPOINT_V1 = b"hospital-audit-checkpoint-v1\n"


async def current_heads(session: AsyncSession) -> dict[int, tuple[int, str]]:
    h = audit_head_table.c
    return {
        r.id: (r.last_seq, r.last_hash)
        for r in (await session.execute(select(h.id, h.last_seq, h.last_hash)))
    }


def checkpoint_line(keyring: AuditKeyring, service: str, heads: Mapping[int, tuple[int, str]]) -> str:
    doc = {
        "service": service,
        "at": utcnow().isoformat(timespec="seconds"),
        "heads": {str(c): [seq, hsh] for c, (seq, hsh) in sorted(heads.items())},
    }
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(
        keyring._key(keyring.current_id), _CHECKPOINT_V1 + body.encode(), hashlib.sha256
    ).hexdigest()
    return json.dumps(
        {**doc, "key_id": keyring.current_id, "mac": mac}, sort_keys=True, separators=(",", ":")
    )


async def check_checkpoints(
    session: AsyncSession, keyring: AuditKeyring, service: str, lines: Sequence[str]
) -> ChainReport | None:
    """The first problem found against earlier checkpoints (a forged line, a chain now shorter than a
    checkpoint, or a checkpointed record whose hash changed), or None."""
    last: dict[str, Any] | None = None
    for n, line in enumerate(x for x in lines if x.strip()):
        try:
            doc = json.loads(line)
            kid, mac = doc.pop("key_id"), doc.pop("mac")
            body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            good = keyring.knows(kid) and hmac.compare_digest(
                hmac.new(keyring._key(kid), _CHECKPOINT_V1 + body, hashlib.sha256).hexdigest(), mac
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            good = False
        if not good:
            return ChainReport(
                False, 0, None, f"checkpoint line {n + 1}: not a valid checkpoint (forged or damaged)"
            )
        if doc.get("service") == service:
            last = doc
    if last is None:
        return None
    heads = await current_heads(session)
    for chain_s, (seq, hsh) in last["heads"].items():
        chain = int(chain_s)
        now_seq = heads.get(chain, (0, GENESIS))[0]
        if now_seq < seq:
            return ChainReport(
                False,
                0,
                now_seq + 1,
                f"chain {chain}: shorter ({now_seq}) than at checkpoint "
                f"{last['at']} ({seq}): records removed from the end",
                chain,
            )
        if seq == 0:
            continue
        stored = (
            await session.execute(
                select(audit_log_table.c.hash).where(
                    audit_log_table.c.chain == chain, audit_log_table.c.seq == seq
                )
            )
        ).scalar_one_or_none()
        if stored != hsh:
            return ChainReport(
                False, 0, seq, f"chain {chain}: record {seq} differs from checkpoint {last['at']}", chain
            )
    return None
