"""One expiring store for what the provider holds per client: sessions (Galois keys) and secure-fit jobs.

Both are entries by a random id that a client names in later requests. A client may go quiet at any time, so an
entry lives only ``ttl`` seconds after its last use, and the store is bounded: in entries, and optionally in a total
cost (the sessions' key bytes). When a new entry would break a bound, expired entries go first and then the least
recently used; a caller whose entries must not be evicted (a fit in progress is someone's work) refuses instead,
through the ``admit`` check that ``add`` runs under the store's lock.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def new_id() -> str:
    """An unguessable id: holding it is what lets a client use its entry."""
    return secrets.token_urlsafe(18)


@dataclass
class _Held(Generic[T]):
    value: T
    cost: int
    expires_at: float


class ExpiringStore(Generic[T]):
    """Entries by id, each expiring ``ttl`` seconds after its last use, at most ``max_entries`` of them and at most
    ``max_cost`` in total; beyond a bound the least recently used entries are evicted.

    ``unknown(entry_id)`` makes the error for an id the store does not hold; ``in_use(value)`` tells an entry that
    is busy (a fit mid-step), which does not expire until it is done.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int,
        unknown: Callable[[str], Exception],
        *,
        max_cost: int | None = None,
        in_use: Callable[[T], bool] | None = None,
    ) -> None:
        self.ttl, self.max_entries, self.max_cost = ttl, max_entries, max_cost
        self._unknown, self._in_use = unknown, in_use
        self._held: OrderedDict[str, _Held[T]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry_id: str, value: T, *, cost: int = 0, admit: Callable[[list[T]], None] | None = None) -> None:
        """Hold ``value`` under ``entry_id``. ``admit`` sees the live entries and may refuse by raising; otherwise
        the least recently used entries make room."""
        with self._lock:
            self._drop_expired()
            if admit is not None:
                admit([held.value for held in self._held.values()])
            while self._held and (
                len(self._held) >= self.max_entries
                or (self.max_cost is not None and self._cost() + cost > self.max_cost)
            ):
                self._held.popitem(last=False)
            self._held[entry_id] = _Held(value, cost, time.monotonic() + self.ttl)

    def get(self, entry_id: str) -> T:
        """The entry, now the most recently used, its expiry counted from now."""
        with self._lock:
            self._drop_expired()
            held = self._held.get(entry_id)
            if held is None:
                raise self._unknown(entry_id)
            held.expires_at = time.monotonic() + self.ttl
            self._held.move_to_end(entry_id)
            return held.value

    def touch(self, entry_id: str) -> None:
        """Count the entry's expiry from now (after a long step on it), if it is still held."""
        with self._lock:
            held = self._held.get(entry_id)
            if held is not None:
                held.expires_at = time.monotonic() + self.ttl

    def holds(self, entry_id: str, value: T) -> bool:
        """Whether ``entry_id`` still names this very value (not closed, expired or replaced since it was got)."""
        with self._lock:
            held = self._held.get(entry_id)
            return held is not None and held.value is value

    def close(self, entry_id: str) -> None:
        with self._lock:
            self._held.pop(entry_id, None)

    @property
    def cost(self) -> int:
        """The held entries' total cost."""
        with self._lock:
            return self._cost()

    def __len__(self) -> int:
        return len(self._held)

    def _cost(self) -> int:
        return sum(held.cost for held in self._held.values())

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for entry_id in [
            entry_id
            for entry_id, held in self._held.items()
            if held.expires_at < now and not (self._in_use is not None and self._in_use(held.value))
        ]:
            del self._held[entry_id]
