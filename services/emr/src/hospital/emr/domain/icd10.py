"""The ICD-10 code list the EMR ships (a curated subset of the Ministry of Health's Vietnamese list,
QĐ 4469/QĐ-BYT; see docs/emr.md for its source and licence) and search over it by code or by name typed
with or without diacritics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from hospital.emr.domain.text import fold

CODE_RE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9X]{1,2})?$")
_CODE_QUERY = re.compile(r"^[A-Za-z][0-9]{1,2}(\.?[0-9]{0,2})?$")


@dataclass(frozen=True)
class Icd10:
    code: str
    name_vi: str
    chapter: str
    block: str
    key: str  # folded name


@cache
def codes() -> dict[str, Icd10]:
    text = resources.files("hospital.emr.data").joinpath("icd10_vi.tsv").read_text(encoding="utf-8")
    out: dict[str, Icd10] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, name, chapter, block = line.split("\t")
        if not CODE_RE.match(code):
            raise ValueError(f"bad ICD-10 code in the shipped list: {code!r}")
        out[code] = Icd10(code, name, chapter, block, fold(name))
    return out


def normalize_code(code: str) -> str:
    """ "j189" / "J18.9 " → "J18.9"; "I10" stays."""
    c = code.strip().upper().replace(" ", "")
    if "." not in c and len(c) > 3:
        c = c[:3] + "." + c[3:]
    return c


def lookup(code: str) -> Icd10 | None:
    return codes().get(normalize_code(code))


def search(query: str, limit: int = 20) -> list[Icd10]:
    """By code prefix when the query looks like a code ("J18", "j18.9", "J189"), else every query word must
    start a word of the folded name ("viem phoi" and "viêm phổi" both find J18.9), best matches first."""
    q = query.strip()
    if not q:
        return []
    limit = max(1, min(limit or 20, 100))
    items = codes().values()
    if _CODE_QUERY.match(q):
        prefix = normalize_code(q) if len(q.replace(".", "")) > 3 else q.upper()
        hits = [c for c in items if c.code.startswith(prefix)]
        return sorted(hits, key=lambda c: c.code)[:limit]
    terms = fold(q).split()
    scored: list[tuple[int, str, Icd10]] = []
    for c in items:
        name_words = c.key.split()
        if all(any(w.startswith(t) for w in name_words) for t in terms):
            phrase = c.key.startswith(" ".join(terms))
            scored.append((0 if phrase else 1, c.code, c))
    return [c for _, _, c in sorted(scored)[:limit]]
