"""DICOM attribute matching (PS3.4 C.2.2.2) translated to index predicates: pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata

_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")


def fold(text: str | None) -> str | None:
    """Upper-case ASCII key for person names: 'Phạm^Minh Tuấn' -> 'PHAM^MINH TUAN'."""
    if text is None:
        return None
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def like_pattern(value: str) -> str:
    """A DICOM wildcard ('*', '?') as a SQL LIKE pattern with '\\' as the escape character."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def date_range(value: str) -> tuple[str | None, str | None] | None:
    """'20250101-20250131', '-20250131', '20250101-' -> (low, high); a single date -> None (exact)."""
    m = _RANGE.match(value.strip())
    if not m:
        return None
    return m.group(1), m.group(2)


def uid_list(value: str) -> list[str]:
    """List of UID matching: backslash-separated UIDs."""
    return [v.strip() for v in value.split("\\") if v.strip()]


def dicom_date(value: str | None) -> str | None:
    """'2025-03-14' / '2025-03' / '2025' / '20250314' -> DICOM DA as far as known (None if empty)."""
    if not value:
        return None
    digits = value.replace("-", "").strip()
    if not digits.isdigit() or len(digits) not in (4, 6, 8):
        raise ValueError(f"not a date: {value!r}")
    return digits
