"""Search keys for Vietnamese text typed with or without diacritics."""

from __future__ import annotations

import re
import unicodedata

from unidecode import unidecode

_NON_WORD = re.compile(r"[^0-9a-z.]+")


def fold(text: str) -> str:
    """The diacritic-free lowercase ASCII search key: "Viêm phổi, không" → "viem phoi khong"."""
    return " ".join(_NON_WORD.sub(" ", unidecode(unicodedata.normalize("NFC", text)).lower()).split())


def words(text: str) -> list[str]:
    return fold(text).split()
