"""``RemoteProvider``: the provider's methods over HTTP, so the library and the app can use a URL or an object."""

from __future__ import annotations

import httpx

from securealign.crypto.errors import ERRORS, ProtocolError

_OCTETS = {"content-type": "application/octet-stream"}


class RemoteProvider:
    """Talks to ``python -m securealign serve``; refusals come back as the same ``ProtocolError`` subclasses."""

    def __init__(self, url: str, timeout: float = 30.0, fit_timeout: float = 600.0) -> None:
        self.endpoint = url.rstrip("/")
        self.fit_timeout = fit_timeout  # a batch of up to 255 encrypted rows takes the provider tens of seconds
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteProvider:
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
            error, detail = ERRORS.get(body.get("error"), ProtocolError), body.get("detail")
        except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
            error, detail = None, response.text[:200]
        if error is None or not isinstance(detail, str):
            # a proxy's error page, a crash, a validation error: still one readable refusal of the protocol family
            raise ProtocolError(f"provider answered HTTP {response.status_code}: {str(detail)[:200]}")
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
        return self._call(
            "POST", "/evaluate", params={"session": session_id, "model": model_id}, content=query, headers=_OCTETS
        ).content

    # secure fitting ---------------------------------------------------------------------------------------------
    def public_sets(self) -> dict[str, dict]:
        return self._call("GET", "/public-sets").json()

    def open_fit(self, session_id: str, public_set: str, mode: str, width: int, model: str | None = None) -> dict:
        params = {
            "session": session_id,
            "public_set": public_set,
            "mode": mode,
            "width": width,
            **({"model": model} if model else {}),
        }
        return self._call("POST", "/fits", params=params).json()

    def close_fit(self, fit_id: str) -> None:
        self._call("DELETE", f"/fits/{fit_id}")

    def add_fit_rows(self, fit_id: str, batch: bytes) -> int:
        return self._call(
            "POST", f"/fits/{fit_id}/rows", content=batch, headers=_OCTETS, timeout=self.fit_timeout
        ).json()["rows_received"]

    def fit_product(self, fit_id: str) -> bytes:
        return self._call("GET", f"/fits/{fit_id}/product", timeout=self.fit_timeout).content

    def fit_rows(self, fit_id: str, start: int) -> bytes:
        return self._call("GET", f"/fits/{fit_id}/rows", params={"start": start}, timeout=self.fit_timeout).content

    def finish_fit(self, fit_id: str, product: bytes) -> dict:
        return self._call(
            "POST", f"/fits/{fit_id}/product", content=product, headers=_OCTETS, timeout=self.fit_timeout
        ).json()
