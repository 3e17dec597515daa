"""Nothing submitted twice: a form carries a one-time key; a second submission with the same key (a double
click, a retried request) gets the first one's outcome instead of doing the work again."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any


class Once:
    def __init__(self, keep_seconds: float = 600.0, size: int = 10_000) -> None:
        self.keep_seconds, self.size = keep_seconds, size
        self._done: OrderedDict[str, tuple[float, asyncio.Future[Any]]] = OrderedDict()

    async def run(self, key: str, work: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        while self._done and next(iter(self._done.values()))[0] < now - self.keep_seconds:
            self._done.popitem(last=False)
        hit = self._done.get(key)
        if hit is not None:
            return await asyncio.shield(hit[1])
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._done[key] = (now, fut)
        if len(self._done) > self.size:
            self._done.popitem(last=False)
        try:
            result = await work()
        except BaseException as exc:
            # a refused or failed submission may be corrected and sent again with the same key
            self._done.pop(key, None)
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        fut.set_result(result)
        return result
