"""The app's link to the provider: in-process or remote, the served models registered or checked once, and
the client's CKKS keys (one set made ahead, so a new session does not wait for key generation).
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading

from securealign.app_support.service.checks import ServiceError
from securealign.crypto import ClientSession, Provider, RemoteProvider
from securealign.crypto.errors import ProtocolError, UnknownModelError
from securealign.experiments import artifacts

PROVIDER_URL_ENV = "SECUREALIGN_PROVIDER_URL"


@functools.lru_cache(maxsize=1)
def app_provider() -> Provider | RemoteProvider:
    """In-process by default; with ``$SECUREALIGN_PROVIDER_URL`` the app's queries go over HTTP to a provider on
    another machine (``python -m securealign serve --assets``), which then holds the heads and maps. Made on first
    use, not at import: importing the service does no work."""
    url = os.environ.get(PROVIDER_URL_ENV)
    return RemoteProvider(url) if url else Provider()


_registered: set[str] = set()
_register_lock = threading.Lock()


def served_model(task: str, source: str, target: str) -> str:
    """The provider's model for this pair: registered here once (head for paper mode, map + head pre-composed for
    sealed mode), or, with a remote provider, checked to be served there."""
    model_id = artifacts.served_model_id(task, source, target)
    with _register_lock:
        if model_id in _registered:
            return model_id
        if isinstance(app_provider(), RemoteProvider):
            try:
                app_provider().describe(model_id)
            except ConnectionError as exc:
                raise ServiceError(f"The provider at {app_provider().endpoint} cannot be reached ({exc}).") from exc
            except UnknownModelError as exc:
                raise ServiceError(
                    f"The provider at {app_provider().endpoint} does not serve {model_id}; start it with "
                    "`python -m securealign serve --assets`."
                ) from exc
        else:
            app_provider().register(
                model_id, artifacts.load_head(task, target), artifacts.load_map(task, source, target)
            )
        _registered.add(model_id)
    return model_id


_spare_keys: queue.Queue[ClientSession] = queue.Queue(maxsize=1)


def make_spare_keys() -> None:
    with contextlib.suppress(queue.Full):
        _spare_keys.put_nowait(ClientSession())


def new_client() -> ClientSession:
    """Fresh CKKS keys for one browser or API session; the secret key never leaves the returned object.

    Key generation takes a few hundred ms, so one set is made ahead, in the background, and handed to the next
    new session (each set goes to exactly one session); the next spare is then made in the background."""
    try:
        client = _spare_keys.get_nowait()
    except queue.Empty:
        return ClientSession()
    threading.Thread(target=make_spare_keys, daemon=True, name="spare-keys").start()
    return client


def close_client(client: ClientSession | None) -> None:
    """Drop the provider-side session (its public Galois keys) when a browser session ends."""
    if client is not None:
        for session_id in client.sessions.values():
            # the page is already gone: a provider that expired the session or went away changes nothing
            with contextlib.suppress(ConnectionError, ProtocolError):
                app_provider().close_session(session_id)
