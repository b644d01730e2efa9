"""Caches with a bound on what they hold, not only on how many entries.

Clients send the same tools with every request, so the proxy keeps the work it did on each
distinct tools list and schema. Keyed by what a client sent, such a cache is also a way for a
client to fill the proxy's memory: 256 entries of an 8 MB tools list is 2 GB. So each cache here
is bounded by entries and by an estimate of the bytes it holds (its keys and what was made from
them), evicts the least recently used first, and does not keep an entry that alone would take
more than a quarter of its budget. It keeps an entry only the second time its key is asked for
(the first time, it remembers the key's hash): an agent sends the same tools again with its next
turn, while a flood of keys each sent once, as an attacker sends them, leaves nothing behind and
the memory returns when the flood ends. ``/metrics`` shows every cache's entries, bytes and evictions.
Requests whose new tools take long to check are checked in a worker thread, so the caches take a
lock (never held while a value is made).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["CACHES", "BoundedCache"]

V = TypeVar("V")


class BoundedCache(Generic[V]):
    def __init__(self, name: str, *, max_entries: int, max_bytes: int, listed: bool = True) -> None:
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._seen_once: dict[int, None] = {}  # hashes of keys asked for once, oldest first
        self._lock = threading.Lock()
        if listed:
            CACHES.append(self)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, make: Callable[[], V], cost: int) -> V:
        """The value for ``key``, made by ``make`` if it is not here; ``cost`` estimates its bytes."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found[0]
        value = make()  # an exception is not cached: the next request tries again (and fails again)
        if cost > self.max_bytes // 4:
            return value
        with self._lock:
            if not self._second_sight(hash(key)):
                return value
            if key not in self._entries:
                self._entries[key] = (value, cost)
                self.bytes += cost
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                self.evictions += 1
        return value

    def _second_sight(self, digest: int) -> bool:
        """Whether ``digest`` was asked for before; if not, remembers it (lock held)."""
        if self._seen_once.pop(digest, False) is None:
            return True
        self._seen_once[digest] = None
        if len(self._seen_once) > 4 * self.max_entries:
            del self._seen_once[next(iter(self._seen_once))]
        return False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._seen_once.clear()
            self.bytes = 0


CACHES: list[BoundedCache[Any]] = []  # every cache, for /metrics
