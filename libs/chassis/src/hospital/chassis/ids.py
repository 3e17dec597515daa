"""Identifiers: UUIDv7 for internal ids (time-ordered, index-friendly)."""
from __future__ import annotations

import uuid6


def new_id() -> str:
    """A new UUIDv7 as its canonical string."""
    return str(uuid6.uuid7())
