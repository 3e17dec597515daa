"""Vietnamese personal names: normalisation, search keys, ranking and duplicate hints.

A Vietnamese name is written surname first and given name last ("Nguyễn Văn An": surname Nguyễn,
middle name Văn, given name An). People are addressed and remembered by the given name, and a few
surnames (Nguyễn, Trần, Lê, ...) cover most of the population, so ranking weighs the given name.

Two spellings of the same syllable are common: the old and new tone-mark placement ("Hoà" / "Hòa",
"Thuý" / "Thúy"). Diacritic-exact comparisons here treat them as equal by comparing each syllable's
letters and its tone mark separately.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from unidecode import unidecode

__all__ = [
    "LIKELY_DUPLICATE",
    "DateLike",
    "DuplicateAssessment",
    "PersonFacts",
    "fold",
    "looks_like_duplicate",
    "name_match_score",
    "normalize_name",
    "normalize_phone",
    "search_tokens",
]

# The five Vietnamese tone marks as combining characters (huyền, sắc, ngã, hỏi, nặng).
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")
_WORD = re.compile(r"[^\W_]+")
_NON_ALNUM = re.compile(r"[^a-z0-9]")
_WORD_PART = re.compile(r"([-'\u2019])")


def normalize_name(text: str) -> str:
    """Return a name in NFC with single spaces and each word capitalised.

    "nguyễn văn  AN" → "Nguyễn Văn An". Parts after a hyphen or apostrophe are capitalised too, as
    in the Ê Đê name "H'Hen Niê".
    """
    words = unicodedata.normalize("NFC", text).split()
    return " ".join("".join(part.capitalize() for part in _WORD_PART.split(word)) for word in words)


def fold(text: str) -> str:
    """Return the diacritic-free lowercase ASCII search key: "Đặng Thị Đào" → "dang thi dao"."""
    return " ".join(unidecode(unicodedata.normalize("NFC", text)).lower().split())


class _Token(NamedTuple):
    folded: str  # ASCII, e.g. "hoa"
    base: str  # NFC lowercase letters without the tone mark: "hoa" for "hoà", "ân" for "ấn"
    tone: str  # the syllable's combining tone mark, "" for the level tone


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for word in _WORD.findall(unicodedata.normalize("NFC", text).lower()):
        folded = _NON_ALNUM.sub("", unidecode(word).lower())
        if not folded:
            continue
        decomposed = unicodedata.normalize("NFD", word)
        base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONE_MARKS))
        tone = "".join(c for c in decomposed if c in _TONE_MARKS)
        tokens.append(_Token(folded, base, tone))
    return tokens


def search_tokens(text: str) -> tuple[str, ...]:
    """Return the folded words of ``text`` in order, punctuation dropped: the terms to index."""
    return tuple(token.folded for token in _tokens(text))


# Score bands, highest first; each tier's scores stay inside its band so tiers never overlap.
_EXACT, _IN_ORDER, _GIVEN_NAME, _PARTIAL = 0.90, 0.70, 0.50, 0.10


def name_match_score(query: str, full_name: str) -> float:
    """Score how well a typed query matches a patient's full name, in [0, 1].

    Tiers (diacritic-insensitive, each word of the query matched as a prefix of a name word):
    1. 0.90-1.00 the whole name, word for word;
    2. 0.70-0.85 every query word, in order ("ng v an", "nguyen an", "an" for "Nguyễn Văn An");
    3. 0.50-0.65 the given name in full plus the other words in any order ("an nguyen van");
    4. 0.10-0.43 some of the query words; 0 when none.
    Within a tier, a longer share of the name spelled out and a query ending on the given name rank
    higher, and when the query is typed with diacritics, words that also match them exactly rank
    slightly above words that match only once folded ("An" prefers "An" to "Ân"). A query typed
    without diacritics is neutral: "nguyen van an" scores "Nguyễn Văn An" and "Nguyễn Văn Ân" alike.
    """
    q, n = _tokens(query), _tokens(full_name)
    if not q or not n:
        return 0.0
    strict = any(t.tone or not t.base.isascii() for t in q)  # typed with diacritics
    if [t.folded for t in q] == [t.folded for t in n]:
        return _EXACT + 0.10 * _exactness(q, n, [(i, i) for i in range(len(n))], strict)
    in_order = _in_order_alignment(q, n)
    if in_order is not None:
        return _IN_ORDER + _within_tier(q, n, in_order, strict)
    for i in (i for i, token in enumerate(q) if token.folded == n[-1].folded):
        others = [k for k in range(len(q)) if k != i]
        rest = _max_matching(q, n, others, range(len(n) - 1))
        if len(rest) == len(others):
            return _GIVEN_NAME + _within_tier(q, n, sorted([*rest, (i, len(n) - 1)]), strict)
    pairs = _max_matching(q, n, range(len(q)), range(len(n)))
    if not pairs:
        return 0.0
    return (
        _PARTIAL
        + 0.25 * len(pairs) / len(q)
        + 0.05 * _coverage(q, n, pairs)
        + 0.03 * _exactness(q, n, pairs, strict)
    )


def _within_tier(q: list[_Token], n: list[_Token], pairs: list[tuple[int, int]], strict: bool) -> float:
    """0-0.15 bonus inside the in-order and given-name tiers."""
    last_q, last_n = pairs[-1]
    ends_on_given_name = last_q == len(q) - 1 and last_n == len(n) - 1 and q[last_q].folded == n[-1].folded
    return 0.08 * _coverage(q, n, pairs) + 0.04 * ends_on_given_name + 0.03 * _exactness(q, n, pairs, strict)


def _prefix(q: _Token, n: _Token) -> bool:
    return n.folded.startswith(q.folded)


def _in_order_alignment(q: list[_Token], n: list[_Token]) -> list[tuple[int, int]] | None:
    """Pair each query word with a later name word it prefixes; the last one with the given name if it can."""
    if len(q) > 1 and _prefix(q[-1], n[-1]):
        head = _greedy_in_order(q[:-1], n[:-1])
        if head is not None:
            return [*head, (len(q) - 1, len(n) - 1)]
    return _greedy_in_order(q, n)


def _greedy_in_order(q: list[_Token], n: list[_Token]) -> list[tuple[int, int]] | None:
    pairs, j = [], 0
    for i, token in enumerate(q):
        while j < len(n) and not _prefix(token, n[j]):
            j += 1
        if j == len(n):
            return None
        pairs.append((i, j))
        j += 1
    return pairs


def _max_matching(
    q: list[_Token], n: list[_Token], q_indices: Iterable[int], n_indices: range
) -> list[tuple[int, int]]:
    """Largest set of (query word, name word) prefix pairs, each word used once (Kuhn's algorithm)."""
    owner: dict[int, int] = {}

    def assign(i: int, seen: set[int]) -> bool:
        for j in n_indices:
            if j not in seen and _prefix(q[i], n[j]):
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in q_indices:
        assign(i, set())
    return sorted((i, j) for j, i in owner.items())


def _coverage(q: list[_Token], n: list[_Token], pairs: list[tuple[int, int]]) -> float:
    """Share of the name's letters that the matched query words spell out."""
    return sum(len(q[i].folded) for i, _ in pairs) / sum(len(t.folded) for t in n)


def _exactness(q: list[_Token], n: list[_Token], pairs: list[tuple[int, int]], strict: bool) -> float:
    """Share of matched words that also agree on diacritics (1.0 when the query has none)."""
    if not strict:
        return 1.0
    return sum(_diacritics_agree(q[i], n[j]) for i, j in pairs) / len(pairs)


def _diacritics_agree(q: _Token, n: _Token) -> bool:
    if q.folded == n.folded:
        return q.base == n.base and q.tone == n.tone
    # A word still being typed: its letters so far, and its tone if already typed.
    return n.base.startswith(q.base) and (not q.tone or q.tone == n.tone)


# --- duplicate candidates -------------------------------------------------------------------------

LIKELY_DUPLICATE = 0.6
"""Score from which two records should be shown to the clerk as the same person."""


class DateLike(Protocol):
    """A birth date that may lack month and day: ``datetime.date`` or ``identity.PartialDate``."""

    @property
    def year(self) -> int: ...

    @property
    def month(self) -> int | None: ...

    @property
    def day(self) -> int | None: ...


@dataclass(frozen=True)
class PersonFacts:
    """What a patient record says about who the person is, for duplicate detection."""

    full_name: str
    birth_date: DateLike | None = None
    sex: str | None = None
    phone: str | None = None
    cccd: str | None = None
    bhyt_number: str | None = None


@dataclass(frozen=True)
class DuplicateAssessment:
    """How likely two records are the same person, with the facts that agree or disagree."""

    score: float
    reasons: tuple[str, ...]

    @property
    def likely(self) -> bool:
        return self.score >= LIKELY_DUPLICATE


def normalize_phone(text: str | None) -> str | None:
    """Digits of a Vietnamese phone number in national form: "+84 912 345 678" → "0912345678"."""
    digits = re.sub(r"\D", "", text or "")
    if digits.startswith("84") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    return digits or None


def looks_like_duplicate(a: PersonFacts, b: PersonFacts) -> DuplicateAssessment:
    """Score whether two patient records describe the same person.

    Evidence adds up: same folded name 0.40 (similar name 0.25), same full birth date 0.30 (same year
    when either side only knows the year 0.15), same sex 0.10, same phone 0.35. So "same name, birth
    date and sex" gives 0.80, "same name, birth year and sex" 0.65 and "same phone, similar name" 0.60,
    all at or above ``LIKELY_DUPLICATE``. A different sex or birth date halves the score (family members
    often share a phone) and a different CCCD quarters it. The same CCCD means the same person (1.0),
    and the same BHYT social-insurance number (last 10 characters of the card) gives at least 0.95;
    contradictions stay in the reasons so the clerk sees them.
    """
    reasons: list[str] = []
    score = 0.0
    if fold(a.full_name) == fold(b.full_name):
        reasons.append("same_name")
        score += 0.40
    elif max(name_match_score(a.full_name, b.full_name), name_match_score(b.full_name, a.full_name)) >= 0.70:
        reasons.append("similar_name")
        score += 0.25
    if a.birth_date is not None and b.birth_date is not None:
        relation = _birth_relation(a.birth_date, b.birth_date)
        reasons.append(relation)
        score += {"same_birth_date": 0.30, "same_birth_year": 0.15}.get(relation, 0.0)
    if a.sex and b.sex:
        reasons.append("same_sex" if a.sex == b.sex else "different_sex")
        score += 0.10 if a.sex == b.sex else 0.0
    phone_a, phone_b = normalize_phone(a.phone), normalize_phone(b.phone)
    if phone_a and phone_a == phone_b:
        reasons.append("same_phone")
        score += 0.35
    for contradiction in ("different_birth_date", "different_sex"):
        if contradiction in reasons:
            score *= 0.5
    if a.cccd and b.cccd:
        reasons.append("same_cccd" if a.cccd.strip() == b.cccd.strip() else "different_cccd")
        score = 1.0 if reasons[-1] == "same_cccd" else score * 0.25
    if a.bhyt_number and b.bhyt_number and _insured_id(a.bhyt_number) == _insured_id(b.bhyt_number):
        reasons.append("same_bhyt_insured_id")
        score = max(score, 0.95)
    return DuplicateAssessment(round(min(score, 1.0), 4), tuple(reasons))


def _insured_id(card_number: str) -> str:
    return re.sub(r"\s", "", card_number).upper()[-10:]


def _birth_relation(a: DateLike, b: DateLike) -> str:
    """Classify two birth dates: same date, same year (when either lacks the day) or different."""
    if a.year != b.year or (a.month is not None and b.month is not None and a.month != b.month):
        return "different_birth_date"
    if a.day is None or b.day is None:
        return "same_birth_year"
    return "same_birth_date" if a.day == b.day else "different_birth_date"
