"""The one expiring store behind the provider's sessions and fit jobs: expiry after last use, the count and cost
bounds with least-recently-used eviction, busy entries kept, and a caller's admit check refusing instead.

The store holds plain Python values; the sessions and fits built on it are tested with real keys and ciphertexts in
test_crypto_bad_input.py, test_crypto_inference.py, test_crypto_dos.py and test_crypto_secure_fit.py.
"""

import threading
import time

import pytest

from securealign.crypto.errors import LimitExceededError, UnknownSessionError
from securealign.crypto.expiring import ExpiringStore, new_id


def _store(ttl: float = 60.0, max_entries: int = 3, **kwargs) -> ExpiringStore:
    return ExpiringStore(ttl, max_entries, lambda entry_id: UnknownSessionError(f"no {entry_id}"), **kwargs)


def test_count_bound_evicts_the_least_recently_used():
    store = _store(max_entries=2)
    store.add("a", "A")
    store.add("b", "B")
    assert store.get("a") == "A"  # now "b" is the least recently used
    store.add("c", "C")
    assert len(store) == 2 and store.get("a") == "A" and store.get("c") == "C"
    with pytest.raises(UnknownSessionError, match="no b"):
        store.get("b")


def test_cost_bound_evicts_until_the_new_entry_fits():
    store = _store(max_entries=10, max_cost=100)
    for entry_id in "abc":
        store.add(entry_id, entry_id, cost=40)  # "a" goes when "c" arrives: 40 + 40 + 40 > 100
    assert store.cost == 80 and len(store) == 2
    with pytest.raises(UnknownSessionError):
        store.get("a")
    store.close("b")
    assert store.cost == 40 and len(store) == 1


def test_entries_expire_after_their_last_use_unless_busy():
    busy = threading.Lock()
    store = _store(ttl=1.0, in_use=lambda value: value is busy)
    store.add("idle", object())
    store.add("used", object())
    store.add("busy", busy)
    time.sleep(0.6)
    store.get("used")  # its expiry counts from now
    with busy:
        time.sleep(0.6)
        store.get("used")
        assert store.get("busy") is busy  # past its time, but held mid-step
        with pytest.raises(UnknownSessionError):
            store.get("idle")


def test_touch_and_holds():
    store = _store(ttl=1.0)
    value = object()
    store.add("a", value)
    time.sleep(0.6)
    store.touch("a")
    time.sleep(0.6)
    assert store.holds("a", value) and not store.holds("a", object())
    store.close("a")
    assert not store.holds("a", value)
    store.touch("a")  # a closed entry stays closed
    assert len(store) == 0


def test_admit_refuses_before_anything_is_evicted():
    store = _store(max_entries=2)

    def admit(live: list) -> None:
        if len(live) >= 2:
            raise LimitExceededError("full")

    store.add("a", "A", admit=admit)
    store.add("b", "B", admit=admit)
    with pytest.raises(LimitExceededError, match="full"):
        store.add("c", "C", admit=admit)
    assert store.get("a") == "A" and store.get("b") == "B"


def test_new_ids_are_unguessable():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) >= 24 for i in ids)
