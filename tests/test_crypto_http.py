"""The provider as an HTTP service on 127.0.0.1: refusals keep their error types, bodies are bounded, and eight
parallel clients (each with its own keys and session) all get correct logits on real embeddings."""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from securealign.crypto import (
    ClientSession,
    Layout,
    Provider,
    RemoteProvider,
    ckks,
    plaintext_logits,
    run_encrypted_query,
    wire,
)
from securealign.crypto.errors import (
    IntegrityError,
    LimitExceededError,
    QueryBudgetError,
    SecretKeyRefusedError,
    UnknownModelError,
    UnknownSessionError,
    WireFormatError,
)
from securealign.crypto.server import running_server
from securealign.experiments.task_models import fit_task_models

N_CLIENTS = 8
QUERIES_PER_CLIENT = 10


@pytest.fixture(scope="module")
def models():
    return fit_task_models("bbc_news", "wordllama", "minilm", n_test=N_CLIENTS * QUERIES_PER_CLIENT)


@pytest.fixture(scope="module")
def url(models):
    provider = Provider()
    provider.register_sealed("bbc", models.W, models.b, models.V, models.c, models.classes)
    with running_server(provider) as base_url:
        yield base_url


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_parallel_clients_all_get_correct_results(models, url):
    reference = plaintext_logits(models.test_source, models.V, models.c, models.W, models.b)
    results: dict[int, np.ndarray] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(N_CLIENTS, timeout=60)

    def client_thread(index: int) -> None:
        try:
            client = ClientSession()
            with RemoteProvider(url, timeout=60) as remote:
                start.wait()
                for q in range(index * QUERIES_PER_CLIENT, (index + 1) * QUERIES_PER_CLIENT):
                    mode = ("paper", "sealed")[q % 2]
                    z = models.test_source[q]
                    x = z @ models.W + models.b if mode == "paper" else z
                    results[q] = run_encrypted_query(client, remote, "bbc", x, mode)[0]
        except BaseException as exc:  # reported below with its traceback
            failures.append(exc)

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True) for i in range(N_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(results) == list(range(N_CLIENTS * QUERIES_PER_CLIENT))
    encrypted = np.array([results[q] for q in sorted(results)])
    assert np.max(np.abs(encrypted - reference)) < 1e-3
    assert np.array_equal(encrypted.argmax(1), reference.argmax(1))
    assert httpx.get(f"{url}/health").json()["sessions"] >= N_CLIENTS


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_refusals_keep_their_types_over_http_and_service_continues(models, url):
    client = ClientSession()
    with RemoteProvider(url) as remote:
        layout = Layout.from_dict(remote.describe("bbc")["modes"]["sealed"])
        session = remote.open_session(client.public_context())
        query = client.encrypt_query(models.test_source[0], layout, "sealed")
        with pytest.raises(UnknownModelError):
            remote.describe("nope")
        with pytest.raises(UnknownSessionError):
            remote.evaluate("nope", "bbc", query)
        with pytest.raises(WireFormatError):
            remote.evaluate(session, "bbc", query[:1000])
        tampered = bytearray(query)
        tampered[5000] ^= 1
        with pytest.raises(IntegrityError):
            remote.evaluate(session, "bbc", bytes(tampered))
        with pytest.raises(LimitExceededError):
            remote.evaluate(session, "bbc", b"\0" * (wire.max_message_bytes(wire.MessageType.QUERY) + 1))
        secret = ckks.save_bytes(client._keys.secret_key)
        meta = {"key": client.key_id, "steps": client.steps, "blobs": ["parameters", "secret_key"]}
        with pytest.raises(SecretKeyRefusedError):
            remote.open_session(wire.encode(wire.MessageType.CONTEXT, meta, [ckks.parameters_bytes(), secret]))
        logits = client.decrypt_result(remote.evaluate(session, "bbc", query))
        z = models.test_source[0]
        assert np.max(np.abs(logits - plaintext_logits(z, models.V, models.c, models.W, models.b))) < 1e-3
        remote.close_session(session)
        with pytest.raises(UnknownSessionError):
            remote.evaluate(session, "bbc", client.encrypt_query(z, layout, "sealed"))


def test_unreachable_provider_is_a_connection_error():
    with RemoteProvider("http://127.0.0.1:9", timeout=2) as remote, pytest.raises(ConnectionError):
        remote.models()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # over 20 s on 2 cores: not in the fast tier
def test_serve_command_serves_model_files_and_demo_models(models, tmp_path):
    """`python -m securealign serve` in a subprocess: a model from an .npz and a demo model, queried over HTTP."""
    np.savez(tmp_path / "bbc.npz", V=models.V, c=models.c, W=models.W, b=models.b, classes=np.array(models.classes))
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "securealign",
        "serve",
        "--port",
        str(port),
        "--model",
        f"bbc={tmp_path}/bbc.npz",
        "--demo",
        "rotten_tomatoes:wordllama:minilm",
    ]
    server = subprocess.Popen(
        command, cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline, remote = time.monotonic() + 90, RemoteProvider(f"http://127.0.0.1:{port}", timeout=5)
        while True:
            try:
                served = remote.models()
                break
            except ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
        assert served == ["bbc", "rotten_tomatoes:wordllama->minilm"]
        assert remote.describe("bbc")["classes"] == models.classes
        z = models.test_source[0]
        logits, _ = run_encrypted_query(ClientSession(), remote, "bbc", z, "sealed")
        assert np.max(np.abs(logits - plaintext_logits(z, models.V, models.c, models.W, models.b))) < 1e-3
        remote.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_every_error_answer_has_the_documented_shape(models, url):
    """Unknown routes (404), wrong methods (405), malformed parameters (400, not FastAPI's 422), oversized bodies (413)
    and protocol refusals all answer JSON {"error", "detail"}; a malformed number is a 400."""
    cases = [
        ("GET", "/no-such-route", {}, 404),
        ("PUT", "/sessions", {}, 405),
        ("GET", "/describe", {}, 400),  # missing parameter
        ("POST", "/fits", {"session": "s", "public_set": "p", "mode": "paper", "width": "abc"}, 400),
        ("POST", "/fits", {"session": "s", "public_set": "p", "mode": "paper", "width": "1e999"}, 400),
        ("GET", "/fits/x/rows", {"start": "Infinity"}, 400),
        ("GET", "/describe", {"model": "nope"}, 404),
    ]
    with httpx.Client(base_url=url) as http:
        for method, path, params, status in cases:
            answer = http.request(method, path, params=params)
            assert answer.status_code == status, (method, path, answer.status_code, answer.text)
            body = answer.json()
            assert set(body) == {"error", "detail"} and isinstance(body["detail"], str), body
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:  # a declared size over the limit: 413 before reading
        sock.sendall(f"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 40}\r\n\r\n".encode())
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(65536):  # the answer, then the server closes the connection
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and set(json.loads(body)) == {"error", "detail"}


def test_query_budgets_per_session_and_per_key(models):
    """A per-key budget outlives sessions: re-opening with the same context does not reset it."""
    provider = Provider(max_queries_per_session=2, max_queries_per_key=3)
    provider.register_sealed("bbc", models.W, models.b, models.V, models.c, models.classes)
    layout = Layout.from_dict(provider.describe("bbc")["modes"]["sealed"])
    client = ClientSession([layout])

    def ask(session: str, client: ClientSession = client) -> None:
        z = models.test_source[0]
        logits = client.decrypt_result(provider.evaluate(session, "bbc", client.encrypt_query(z, layout, "sealed")))
        assert np.max(np.abs(logits - plaintext_logits(z, models.V, models.c, models.W, models.b))) < 1e-3

    first = provider.open_session(client.public_context())
    ask(first), ask(first)
    with pytest.raises(QueryBudgetError, match="session"):
        ask(first)
    second = provider.open_session(client.public_context())
    ask(second)
    with pytest.raises(QueryBudgetError, match="key"):
        ask(second)
    other = ClientSession([layout])  # another key has its own budget
    ask(provider.open_session(other.public_context()), other)
