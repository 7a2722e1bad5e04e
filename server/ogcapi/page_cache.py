"""Answers to identical item requests, kept per View (one access level of one published version), bounded in bytes.

QGIS and web maps ask the same pages again and again (the first page of 1,000, the same bbox when panning back);
a page of 1,000 features costs ~15 ms of a worker's CPU to read, render and encode, a kept answer ~0.1 ms. The key
holds the View the request was answered for, and a publication brings new Views, so an answer never outlives the
data it was read from; `timeStamp` stays the time the page was generated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from server.flights import Flights

MAX_BYTES = 32 * 2**20  # per worker
MAX_ENTRY_BYTES = 2 * 2**20  # larger answers (pages of 10,000) are not kept


@dataclass(frozen=True)
class Page:
    view: object  # kept alive with the entry, so an id() in a key is never reused while the entry exists
    status: int
    headers: dict[str, str]
    body: bytes


class PageCache:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._making = Flights()

    def get(self, view: object, request_key: Hashable) -> Page | None:
        with self._lock:
            page = self._pages.get((id(view), request_key))
            if page is None or page.view is not view:
                return None
            self._pages.move_to_end((id(view), request_key))
            return page

    async def kept_or_made(
        self, view: object, request_key: Hashable, maker: str, make: Callable[[], Awaitable[Page | None]]
    ) -> Page | None:
        """The page kept, else what `make()` returns: made once for all the identical requests that arrive while it
        is being made by the same `maker` (server.flights). `make` keeps what may be kept (`put`); None: no page to
        share, each caller answers on its own. Makers do not share flights, because what one raises is for its own
        callers: the items route raises errors its error mapping answers, server.early_answers sits in front of that
        mapping. The View stays alive with the flight's task (`make` holds it), so its id is not reused meanwhile."""
        page = self.get(view, request_key)
        if page is not None:
            return page
        return await self._making.shared((maker, id(view), request_key), make)

    def put(self, view: object, request_key: Hashable, page: Page) -> None:
        size = len(page.body) + 500
        if size > min(MAX_ENTRY_BYTES, self.max_bytes):
            return
        key = (id(view), request_key)
        with self._lock:
            old = self._pages.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body) + 500
            self._pages[key] = page
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._pages.popitem(last=False)
                self._bytes -= len(evicted.body) + 500

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._bytes = 0


PAGES = PageCache()  # per worker process: the items route's and the early answers' (server.early_answers)
