"""The gateway's input bounds, auth and exposure rules, in process: the real app (middleware included) over a
stub engine, driven through httpx's ASGI transport. The real-server timings are in tests/integration."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import httpx
import pytest

from verticalize.engine_api import GenerationResult
from verticalize.errors import UserError
from verticalize.serve import check_exposure, is_loopback
from verticalize.serve.app import create_app
from verticalize.serve.service import Gateway, GatewaySettings

KEY = "k-secret"


class StubEngine:
    """Counts what it was asked: a refused request must never reach the tokenizer or the generator."""

    base_name = "base"

    def __init__(self) -> None:
        self.tokenised = 0
        self.generated = 0

    def model_names(self) -> list[str]:
        return ["base", "secret-adapter"]

    def count_prompt_tokens(self, req: Any) -> int:
        self.tokenised += 1
        return sum(len(m["content"]) for m in req.messages or []) + len(req.prompt or "")

    def generate(self, req: Any, on_text: Any = None, *args: Any, **kwargs: Any) -> GenerationResult:
        self.generated += 1
        if on_text:
            on_text("ok")
        return GenerationResult("ok", 3, 1, "stop")


def call(settings: GatewaySettings, method: str, path: str, engine: StubEngine | None = None,
         **kwargs: Any) -> httpx.Response:
    app = create_app(Gateway(engine or StubEngine(), settings))

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param


# --------------------------------------------------------------------------------------------- bounds
def test_normal_request_passes_every_bound():
    engine = StubEngine()
    r = call(GatewaySettings(), "POST", "/v1/chat/completions", engine,
             json=chat(stop=["\n\n", "END"], max_tokens=8))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"
    assert engine.generated == 1


def test_default_max_tokens_never_exceeds_the_servers_limit():
    # No max_tokens in the request, a server limit below the default of 128: the limit applies, not a 400.
    r = call(GatewaySettings(max_output_tokens=16), "POST", "/v1/chat/completions",
             json={"model": "base", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body,code,param", [
    (chat(messages=[{"role": "user", "content": "x"}] * 11), "too_many_messages", "messages"),
    (chat(messages=[{"role": "user", "content": "ok"}, {"role": "user", "content": "x" * 101}]),
     "message_too_long", "messages.1.content"),
    (chat(stop=["a", "b", "c"]), "too_many_stop_sequences", "stop"),
    (chat(stop=["x" * 33]), "stop_too_long", "stop"),
    (chat(max_tokens=10_000), "max_tokens_exceeded", "max_tokens"),
    (chat(messages=[{"role": "user", "content": "x" * 90}] * 3), "context_length_exceeded", "messages"),
])
def test_bounds_refuse_before_tokenising(body: dict, code: str, param: str):
    engine = StubEngine()
    settings = GatewaySettings(max_messages=10, max_message_chars=100, max_stop=2, max_stop_chars=32,
                               max_prompt_tokens=64, max_chars_per_token=4)  # 64 tokens x 4 = 256 chars
    r = call(settings, "POST", "/v1/chat/completions", engine, json=body)
    assert_openai_error(r, 400, code, param)
    assert engine.tokenised == 0 and engine.generated == 0


def test_completion_prompt_bounds():
    settings = GatewaySettings(max_message_chars=100, max_prompt_tokens=10, max_chars_per_token=4)
    r = call(settings, "POST", "/v1/completions", json={"model": "base", "prompt": "x" * 101, "max_tokens": 2})
    assert_openai_error(r, 400, "message_too_long", "prompt")
    r = call(settings, "POST", "/v1/completions", json={"model": "base", "prompt": "x" * 41, "max_tokens": 2})
    assert_openai_error(r, 400, "context_length_exceeded", "prompt")
    r = call(settings, "POST", "/v1/completions", json={"model": "base", "prompt": "x" * 40, "max_tokens": 2})
    assert_openai_error(r, 400, "context_length_exceeded", "prompt")  # 40 chars fit the pre-check, not 10 tokens
    r = call(settings, "POST", "/v1/completions", json={"model": "base", "prompt": "x" * 9, "max_tokens": 2})
    assert r.status_code == 200


def test_char_precheck_off_leaves_it_to_the_tokenizer():
    engine = StubEngine()
    r = call(GatewaySettings(max_prompt_tokens=10, max_chars_per_token=0), "POST", "/v1/chat/completions", engine,
             json=chat(messages=[{"role": "user", "content": "x" * 50}]))
    assert_openai_error(r, 400, "context_length_exceeded", "messages")
    assert engine.tokenised == 1


def test_body_over_the_limit_gets_413_from_content_length_and_from_a_chunked_body():
    settings = GatewaySettings(max_body_bytes=1000)
    big = b'{"model": "base", "messages": [{"role": "user", "content": "' + b"x" * 2000 + b'"}]}'
    engine = StubEngine()
    r = call(settings, "POST", "/v1/chat/completions", engine, content=big,
             headers={"content-type": "application/json"})
    assert_openai_error(r, 413, "request_too_large")

    async def chunks():  # no Content-Length: counted while read
        for i in range(0, len(big), 100):
            yield big[i:i + 100]

    r = call(settings, "POST", "/v1/chat/completions", engine, content=chunks(),
             headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_openai_error(r, 413, "request_too_large")
    assert engine.tokenised == 0
    r = call(settings, "POST", "/v1/chat/completions", engine, json=chat())
    assert r.status_code == 200


def test_unknown_route_and_method_keep_the_error_shape():
    assert_openai_error(call(GatewaySettings(), "GET", "/v1/nope"), 404, "not_found")
    assert_openai_error(call(GatewaySettings(), "GET", "/v1/chat/completions"), 405, "method_not_allowed")


def test_huge_seed_is_a_400_not_a_500():
    r = call(GatewaySettings(), "POST", "/v1/chat/completions", json=chat(seed=2**70))
    assert_openai_error(r, 400, param="seed")


# --------------------------------------------------------------------------------------------- auth
def test_key_protects_api_metrics_and_ready_but_not_health():
    settings = GatewaySettings(api_keys={KEY, "other-key"})
    good = {"Authorization": f"Bearer {KEY}"}
    for path in ("/v1/models", "/metrics", "/ready"):
        assert_openai_error(call(settings, "GET", path), 401, "invalid_api_key")
        assert_openai_error(call(settings, "GET", path, headers={"Authorization": "Bearer nope"}), 401)
        assert call(settings, "GET", path, headers=good).status_code == 200
    assert call(settings, "GET", "/ready", headers=good).json()["models"] == ["base", "secret-adapter"]
    assert call(settings, "GET", "/health").status_code == 200
    assert call(settings, "GET", "/v1/models", headers={"Authorization": "bearer other-key"}).status_code == 200


def test_unprotected_metrics_and_ready_never_name_adapters_without_the_key():
    settings = GatewaySettings(api_keys={KEY}, protect_metrics=False)
    assert call(settings, "GET", "/metrics").status_code == 200
    r = call(settings, "GET", "/ready")
    assert r.status_code == 200 and r.json() == {"ready": True} and "secret-adapter" not in r.text
    assert "models" in call(settings, "GET", "/ready", headers={"Authorization": f"Bearer {KEY}"}).json()
    # No key configured at all: nothing to protect with (and only a loopback bind is allowed).
    assert "models" in call(GatewaySettings(), "GET", "/ready").json()


def test_keys_are_compared_in_constant_time_over_every_key(monkeypatch: pytest.MonkeyPatch):
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr("verticalize.serve.service.hmac.compare_digest", spy)
    settings = GatewaySettings(api_keys={"a-key", "b-key", "c-key"})
    for key in ("a-key", "b-key", "c-key", "wrong"):
        compared.clear()
        call(settings, "GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert sorted(compared) == [b"a-key", b"b-key", b"c-key"]  # no early exit on a match


# --------------------------------------------------------------------------------------------- exposure
@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("example.com", False), ("localhost.example.com", False), ("128.0.0.1", False),
])
def test_is_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_non_loopback_bind_needs_a_key_or_insecure(caplog: pytest.LogCaptureFixture):
    check_exposure("127.0.0.1", has_key=False, insecure=False)
    check_exposure("0.0.0.0", has_key=True, insecure=False)
    with pytest.raises(UserError, match="--insecure"):
        check_exposure("0.0.0.0", has_key=False, insecure=False)
    with caplog.at_level("WARNING"):
        check_exposure("0.0.0.0", has_key=False, insecure=True)
    assert "WITHOUT an API key" in caplog.text
