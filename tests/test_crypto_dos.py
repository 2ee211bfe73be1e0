"""No small request costs the provider big (issue 10), against a real ``python -m securealign serve`` process on
127.0.0.1 serving a real head (logistic regression on MiniLM embeddings of BBC News, WordLlama client queries):

- ten crafted CONTEXT messages (compressed copies of one key, a decompression bomb, secret-key bytes appended
  after or inside a Galois-keys blob or in a metadata field, keys for other steps, too many steps) are all refused
  and together raise the server's RSS by less than three genuine contexts do;
- closed sessions give their memory back for reuse: reopening as many sessions does not grow the RSS again;
- a body that never finishes is answered 408 and dropped within the read deadline while another client keeps
  getting correct answers, and an unknown session is refused before its body is read;
- the per-session query budget set on the command line is a 429 with its own error type.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import zstandard

from securealign.crypto import ClientSession, Layout, RemoteProvider, ckks, plaintext_logits, run_encrypted_query, wire
from securealign.crypto.errors import QueryBudgetError
from securealign.experiments.task_models import fit_task_models

BODY_TIMEOUT_S = 2.0
QUERY_BUDGET = 6
_SEAL_HEADER = struct.Struct("<HBBBBHQ")


@pytest.fixture(scope="module")
def models():
    return fit_task_models("bbc_news", "wordllama", "minilm", n_test=QUERY_BUDGET)


@pytest.fixture(scope="module")
def server(models, tmp_path_factory, launch_provider):
    """(url, pid) of a real provider process; stopped (only this process, by its own handle) at the end."""
    path = tmp_path_factory.mktemp("dos") / "bbc.npz"
    np.savez(path, V=models.V, c=models.c, W=models.W, b=models.b, classes=np.array(models.classes))
    with launch_provider(
        "--model", f"bbc={path}", "--body-timeout", str(BODY_TIMEOUT_S), "--max-queries-per-session", str(QUERY_BUDGET)
    ) as (url, proc):
        yield url, proc.pid


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _seal_blob(members: bytes, *, declared_extra: int = 0) -> bytes:
    """A SEAL Galois-keys serialization (zstd) of ``members``, as a forger would frame it."""
    body = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(members)
    return _SEAL_HEADER.pack(0xA15E, 16, 4, 3, 2, 0, 16 + len(body) + declared_extra) + body


def _members(blob: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(blob[16:])


_PUBLIC_KEY = ckks.KeyPair.generate().public_key_bytes()


def _context(galois: bytes, steps: list[int], **extra_meta) -> bytes:
    meta = {"key": ckks.key_id(galois), "steps": steps, "blobs": list(wire.CONTEXT_BLOBS), **extra_meta}
    return wire.encode(wire.MessageType.CONTEXT, meta, [ckks.parameters_bytes(), galois, _PUBLIC_KEY])


def _crafted_contexts() -> dict[str, bytes]:
    """Ten contexts a forger could send, each small on the wire."""
    keys = ckks.KeyPair.generate()
    # parms_id, 8192 key slots, one filled (element 3) with 2 parts
    one = _members(keys.galois_keys_bytes([1], conjugate=False))
    empty = struct.pack("<Q", 0)
    assert one[40:48] == empty  # slot 0 (element 1, the identity) is empty
    filled = one[48 : len(one) - 8 * (8192 - 2)]  # slot 1 (element 3): its part count and its two key parts

    def copies(n: int) -> bytes:  # one key repeated in slots 1..n: SEAL would allocate n keys
        return one[:40] + empty + filled * n + empty * (8192 - 1 - n)

    secret = ckks.save_bytes(keys.secret_key)
    genuine = keys.galois_keys_bytes([1, 2])
    appended_inside, many = _seal_blob(_members(genuine) + secret), _seal_blob(copies(400))
    return {
        "400 copies of one key, 1 step declared": _context(many, [1]),
        "400 copies of one key, 12 steps declared": _context(many, [1 << k for k in range(12)]),
        "12 copies declared as 12 steps": _context(_seal_blob(copies(12)), [1 << k for k in range(12)]),
        "zstd bomb of 64 MB of zeros": _context(_seal_blob(bytes(64 << 20)), [1]),
        "secret key appended after the blob": _context(genuine + secret, [1, 2]),
        "secret key inside the compressed stream": _context(appended_inside, [1, 2]),
        "secret key appended, SEAL size field covering it": _context(
            _SEAL_HEADER.pack(*_SEAL_HEADER.unpack_from(genuine)[:-1], len(genuine) + len(secret))
            + genuine[16:]
            + secret,
            [1, 2],
        ),
        "secret key in an unknown metadata field": _context(genuine, [1, 2], note=secret.hex()[:3000]),
        "keys of other steps than declared": _context(genuine, [4, 8]),
        "duplicate steps": _context(genuine, [1, 1]),
    }


def test_crafted_contexts_cost_less_than_a_few_genuine_ones_and_closed_sessions_free_memory(server):
    url, pid = server
    crafted = _crafted_contexts()
    assert len(crafted) == 10 and max(map(len, crafted.values())) < len(ClientSession().public_context())
    with httpx.Client(base_url=url, timeout=60) as http:

        def open_genuine() -> str:
            answer = http.post("/sessions", content=ClientSession().public_context())
            assert answer.status_code == 200, answer.text
            return answer.json()["session_id"]

        http.delete("/sessions", params={"session": open_genuine()})  # warm up SEAL's pool and lazy imports
        before = _rss_mb(pid)
        genuine = [open_genuine() for _ in range(3)]
        three_genuine = _rss_mb(pid) - before
        accounted = http.get("/health").json()["session_bytes"]
        context = wire.decode(ClientSession().public_context(), wire.MessageType.CONTEXT)
        _, per_context = ckks.load_galois_keys(context.blobs[1], context.meta["steps"])
        for session in genuine:
            assert http.delete("/sessions", params={"session": session}).status_code == 200
        assert http.get("/health").json()["session_bytes"] == 0
        reopened = [open_genuine() for _ in range(3)]  # the memory the closed sessions held is reused
        after_reopen = _rss_mb(pid) - before
        for session in reopened:
            http.delete("/sessions", params={"session": session})
        start = _rss_mb(pid)
        for name, context in crafted.items():
            answer = http.post("/sessions", content=context)
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
            assert set(answer.json()) == {"error", "detail"}, name
        crafted_growth = _rss_mb(pid) - start
        assert http.get("/health").json()["sessions"] == 0
    print(
        f"\nRSS: 3 genuine contexts +{three_genuine:.1f} MB (accounted {accounted / 2**20:.1f} MiB of loaded "
        f"keys), reopened after DELETE +{after_reopen:.1f} MB in all, 10 crafted contexts +{crafted_growth:.1f} MB"
    )
    # what the loaded keys occupy (their seeds expanded) and the public key, not the wire size
    assert accounted == 3 * (per_context + ckks.public_key_size())
    assert three_genuine > 10 and crafted_growth < three_genuine
    # reused, not leaked: six contexts opened in all, at most three alive, stay under what six would occupy
    assert after_reopen < 2 * accounted / 2**20


def test_a_body_that_never_finishes_is_dropped_while_others_are_served(server, models):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.sendall(
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 4000000\r\n\r\n" + b"\0" * 1000
    )  # then nothing more
    stalled.settimeout(BODY_TIMEOUT_S + 8)
    started = time.monotonic()
    answers = []
    with RemoteProvider(url) as remote:
        layout = Layout.from_dict(remote.describe("bbc")["modes"]["sealed"])
        client = ClientSession([layout])
        for z in models.test_source[:3]:  # served while the stalled body waits
            logits, _ = run_encrypted_query(client, remote, "bbc", z, "sealed")
            answers.append(np.max(np.abs(logits - plaintext_logits(z, models.V, models.c, models.W, models.b))))
    received = b""
    while chunk := stalled.recv(65536):  # the 408, then the server closes the connection
        received += chunk
    dropped_after = time.monotonic() - started
    stalled.close()
    assert max(answers) < 1e-3
    assert received.startswith(b"HTTP/1.1 408") and b'"error":"RequestTimeoutError"' in received
    assert BODY_TIMEOUT_S - 0.5 < dropped_after < BODY_TIMEOUT_S + 5


def test_unknown_session_is_refused_before_its_body_is_read(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(BODY_TIMEOUT_S)  # the answer must come before the read deadline could have fired
        sock.sendall(b"POST /evaluate?session=nope&model=bbc HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
        started = time.monotonic()
        answer = sock.recv(65536)
        answered_after = time.monotonic() - started
        while b"UnknownSessionError" not in answer and (chunk := sock.recv(65536)):  # the body may come apart
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404") and b"UnknownSessionError" in answer
    assert answered_after < 1.0


def test_query_budget_per_session_is_a_429(server, models):
    url, _ = server
    with RemoteProvider(url) as remote:
        layout = Layout.from_dict(remote.describe("bbc")["modes"]["sealed"])
        client = ClientSession([layout])
        session = remote.open_session(client.public_context())
        query = client.encrypt_query(models.test_source[0], layout, "sealed")
        for _ in range(QUERY_BUDGET):
            client.decrypt_result(remote.evaluate(session, "bbc", query))
            query = client.encrypt_query(models.test_source[0], layout, "sealed")
        with pytest.raises(QueryBudgetError, match=f"{QUERY_BUDGET} queries"):
            remote.evaluate(session, "bbc", query)
    answer = httpx.post(f"{url}/evaluate", params={"session": session, "model": "bbc"}, content=query)
    assert answer.status_code == 429 and answer.json()["error"] == "QueryBudgetError"
