"""Bounded input and safe exposure against a real gateway process on loopback: oversized requests are refused in
milliseconds (before the tokenizer or the model see them), normal ones are unaffected, and `serve` will not bind a
public address without a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess as Server
from conftest import free_port

API_KEY = "limits-key-1"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BODY_LIMIT = 10_000_000  # above the 1 MB default, so that 200,000 messages reach the message-count check
MARGIN_MS = 500  # the refusals take a few ms; the margin is for a loaded CI machine


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("limits-run")
    (run / "config.yaml").write_text(
        f"model:\n  base: {tiny_model_dir}\nserve:\n  max_output_tokens: 16\n  max_body_bytes: {BODY_LIMIT}\n",
        encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def server(run_dir: Path):
    s = Server(run_dir, api_key=API_KEY)
    yield s
    s.stop()


def post(server: Server, body: bytes | dict, path: str = "/v1/chat/completions") -> tuple[httpx.Response, float]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.perf_counter()
    r = httpx.post(f"{server.url}{path}", content=content, timeout=60,
                   headers={**AUTH, "content-type": "application/json"})
    return r, (time.perf_counter() - started) * 1000


def assert_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> None:
    assert r.status_code == status, r.text[:300]
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code
    if param is not None:
        assert err["param"] == param


def _raw_post_ms(port: int, size: int) -> tuple[bytes, float]:
    """Send the headers of a ``size``-byte body and then the body, 64 KB at a time, until the answer comes: the
    milliseconds from the first byte sent to the status line, and the answer. (A client that writes the whole
    body before it reads, as most do, measures its own writing instead.)"""
    import select
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    pending, left, answer = head, size, b""
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < 30:
            readable, writable, _ = select.select([sock], [sock] if pending or left else [], [], 1)
            if readable:
                chunk = sock.recv(65536)
                answer += chunk
                if not chunk or b"\r\n\r\n" in answer:
                    break
            if writable:
                if not pending:
                    pending, left = b"x" * min(65536, left), left - min(65536, left)
                try:
                    pending = pending[sock.send(pending):]
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
        ms = (time.perf_counter() - started) * 1000
        sock.setblocking(True)
        sock.settimeout(5)
        while b"}}" not in answer:  # the rest of the JSON body
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer, ms
    finally:
        sock.close()


def test_90mb_body_is_refused_with_413_before_it_is_read(server: Server):
    timings = []
    for _ in range(3):
        answer, ms = _raw_post_ms(server.port, 90_000_000)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "request_too_large" and set(error) == {"message", "type", "param", "code"}
        timings.append(ms)
    print(f"\n90 MB body -> 413 in {min(timings):.1f} ms on loopback (best of 3; all: "
          f"{', '.join(f'{t:.1f}' for t in timings)})")
    assert min(timings) < MARGIN_MS
    # A real client that writes the whole body first still gets the 413 (and the connection closed).
    r, ms = post(server, b"x" * 90_000_000)
    print(f"90 MB body through httpx (which writes before it reads) -> {r.status_code} in {ms:.1f} ms")
    assert_error(r, 413, "request_too_large")
    assert r.headers.get("connection") == "close"


def test_chunked_body_is_refused_once_it_passes_the_limit(server: Server):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(2000):  # up to 128 MB, but the server stops reading after 10 MB
            sent += 65536
            yield b"x" * 65536

    started = time.perf_counter()
    try:
        r = httpx.post(f"{server.url}/v1/chat/completions", content=chunks(), timeout=60,
                       headers={**AUTH, "content-type": "application/json"})
    except httpx.HTTPError as e:  # the server may close the connection while the client is still writing
        pytest.fail(f"no 413 response: {e!r}")
    ms = (time.perf_counter() - started) * 1000
    print(f"\nchunked body -> 413 after the client sent {sent / 1e6:.1f} MB, in {ms:.1f} ms")
    assert_error(r, 413, "request_too_large")
    assert ms < 5 * MARGIN_MS


def test_200000_messages_are_refused_fast(server: Server):
    body = json.dumps({"model": "task", "max_tokens": 2,
                       "messages": [{"role": "user", "content": "hi"}] * 200_000}).encode()
    assert len(body) < BODY_LIMIT
    r, ms = post(server, body)
    print(f"\n200,000 messages ({len(body) / 1e6:.1f} MB) -> {r.status_code} in {ms:.1f} ms")
    assert_error(r, 400, "too_many_messages", "messages")
    assert ms < 2 * MARGIN_MS  # JSON parsing of 5 MB is most of it
    # Under the default 1 MB body limit the same request never gets that far: see the unit tests.


def test_long_stop_list_and_long_stop_are_refused(server: Server, tiny_model_dir: Path):
    base = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r, ms = post(server, {**base, "stop": [f"s{i}" for i in range(10_000)]})
    print(f"\n10,000 stop sequences -> {r.status_code} in {ms:.1f} ms")
    assert_error(r, 400, "too_many_stop_sequences", "stop")
    assert ms < MARGIN_MS
    r, _ = post(server, {**base, "stop": ["x" * 5000]})
    assert_error(r, 400, "stop_too_long", "stop")


def test_oversized_prompt_is_refused_before_tokenising(server: Server, tiny_model_dir: Path):
    # 60,000 characters: under the per-message limit, but more than 2048 tokens x 16 characters can hold.
    base = {"model": tiny_model_dir.name, "max_tokens": 2}
    r, ms = post(server, {**base, "messages": [{"role": "user", "content": "word " * 12_000}]})
    print(f"\n60,000-character prompt -> {r.status_code} in {ms:.1f} ms")
    assert_error(r, 400, "context_length_exceeded", "messages")
    assert ms < MARGIN_MS
    r, _ = post(server, {**base, "messages": [{"role": "user", "content": "x" * 70_000}]})
    assert_error(r, 400, "message_too_long", "messages.0.content")
    r, _ = post(server, {**base, "prompt": "y" * 70_000}, "/v1/completions")
    assert_error(r, 400, "message_too_long", "prompt")
    r, _ = post(server, {**base, "max_tokens": 17, "messages": [{"role": "user", "content": "hi"}]})
    assert_error(r, 400, "max_tokens_exceeded", "max_tokens")


def test_normal_requests_are_unaffected(server: Server, tiny_model_dir: Path):
    client = server.client()
    r = client.chat.completions.create(model=tiny_model_dir.name, temperature=0, max_tokens=4, stop=["\n\n", "END"],
                                       messages=[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "What is the fee? " * 50}])
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens >= 1
    r = client.completions.create(model=tiny_model_dir.name, prompt="The fee is", max_tokens=3, temperature=0)
    assert r.usage.completion_tokens >= 1
    # No max_tokens: the default is capped at this server's max_output_tokens (16), not refused.
    r = client.chat.completions.create(model=tiny_model_dir.name, messages=[{"role": "user", "content": "hi"}],
                                       temperature=0)
    assert 1 <= r.usage.completion_tokens <= 16


def test_metrics_and_ready_need_the_key_health_does_not(server: Server):
    assert httpx.get(f"{server.url}/health").status_code == 200
    for path in ("/metrics", "/ready"):
        r = httpx.get(f"{server.url}{path}")
        assert_error(r, 401, "invalid_api_key")
        assert httpx.get(f"{server.url}{path}", headers=AUTH).status_code == 200
    assert "verticalize:errors_total" in httpx.get(f"{server.url}/metrics", headers=AUTH).text
    # With the key, /ready also says how the base was loaded against how the adapters were trained on it.
    base = httpx.get(f"{server.url}/ready", headers=AUTH).json()["base"]
    assert base["trained"] == "unquantised" and base["as_trained"] is True and base["note"] == ""


def _serve(run_dir: Path, *args: str, key: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "VERTICALIZE_API_KEY"}
    env.update({"VERTICALIZE_API_KEY": key} if key else {})
    return subprocess.Popen([sys.executable, "-m", "verticalize", "serve", str(run_dir), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_public_bind_without_a_key_is_refused_unless_insecure(run_dir: Path):
    port = str(free_port())
    proc = _serve(run_dir, "--host", "0.0.0.0", "--port", port)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "without an API key" in out and "--insecure" in out
    proc = _serve(run_dir, "--host", "0.0.0.0", "--port", port, "--insecure")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "WITHOUT an API key" in out
