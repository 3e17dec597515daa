"""The image viewer's authorisation memo: a session that opened a study from a chart the EMR let it read
may fetch that study's frames for a while without the chart being read again for every frame (a CT series
is hundreds of requests). Kept per web process; a frame request without a grant re-checks the chart."""

from __future__ import annotations

import time
from collections import OrderedDict


class StudyGrants:
    def __init__(self, ttl_seconds: float = 900.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl_seconds, size
        self._until: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def grant(self, session_id: str, encounter_id: str, study_uid: str) -> None:
        key = (session_id, encounter_id, study_uid)
        self._until[key] = time.monotonic() + self.ttl
        self._until.move_to_end(key)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def allowed(self, session_id: str, encounter_id: str, study_uid: str) -> bool:
        until = self._until.get((session_id, encounter_id, study_uid))
        return until is not None and until > time.monotonic()
