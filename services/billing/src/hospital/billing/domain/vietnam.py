"""Vietnam-specific helpers shared by the billing domain: diacritics and the local time zone."""

from __future__ import annotations

import unicodedata
from datetime import timedelta, timezone

#: Vietnam time (UTC+7, no daylight saving): the zone of VNPay, Casso, SePay and XML130 times.
VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

_D_STROKE = str.maketrans({"đ": "d", "Đ": "D"})


def strip_diacritics(text: str) -> str:
    """Return ``text`` without Vietnamese diacritics: "Nguyễn Văn Đạt" -> "Nguyen Van Dat".

    "đ"/"Đ" are separate letters, not a base letter plus a combining mark, so
    Unicode decomposition alone leaves them untouched: they are mapped first.
    """
    decomposed = unicodedata.normalize("NFD", text.translate(_D_STROKE))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
