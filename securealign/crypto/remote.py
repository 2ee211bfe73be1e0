"""``RemoteProvider``: the provider's methods over HTTP, so the library and the app can use a URL or an object."""

from __future__ import annotations

import httpx

from securealign.crypto.errors import ERRORS, ProtocolError

_OCTETS = {"content-type": "application/octet-stream"}


class RemoteProvider:
    """Talks to ``python -m securealign serve``; refusals come back as the same ``ProtocolError`` subclasses."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.endpoint = url.rstrip("/")
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RemoteProvider":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"provider at {self.endpoint} is unreachable: {exc}") from exc
        if response.is_success:
            return response
        try:
            body = response.json()
            error = ERRORS.get(body.get("error"), ProtocolError)
            detail = body.get("detail")
        except ValueError:
            error, detail = None, response.text[:200]
        if error is None or not isinstance(detail, str):
            raise RuntimeError(f"provider answered HTTP {response.status_code}: {detail}")
        raise error(detail)

    def models(self) -> list[str]:
        return self._call("GET", "/models").json()["models"]

    def describe(self, model_id: str) -> dict:
        return self._call("GET", "/describe", params={"model": model_id}).json()

    def open_session(self, public_context: bytes) -> str:
        return self._call("POST", "/sessions", content=public_context, headers=_OCTETS).json()["session_id"]

    def close_session(self, session_id: str) -> None:
        self._call("DELETE", "/sessions", params={"session": session_id})

    def evaluate(self, session_id: str, model_id: str, query: bytes) -> bytes:
        return self._call("POST", "/evaluate", params={"session": session_id, "model": model_id},
                          content=query, headers=_OCTETS).content
