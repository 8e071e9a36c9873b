"""The review queue over HTTP and switching a running gateway to a new run version: a real server on loopback."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess as Server
from conftest import make_lora_adapter

KEY_A, KEY_B = "key-a-7f3e9c", "key-b-51d0aa"


def _run(root: Path, base: Path, adapters: dict[str, int]) -> Path:
    for name, seed in adapters.items():
        make_lora_adapter(base, root / "train" / "adapters" / name, seed)
    # The embedded engine: on the tiny model its generations are slow enough that some run across the whole
    # reload, which the test needs (the OpenVINO engine's drain on close is tested in test_openvino_engine.py).
    (root / "config.yaml").write_text(f"model:\n  base: {base}\nserve:\n  engine: embedded\n  max_output_tokens: 64\n",
                                      encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    parent = tmp_path_factory.mktemp("family")
    v1 = _run(parent / "svc", tiny_model_dir, {"task": 1, "domain": 2})
    v2 = _run(parent / "svc.v2", tiny_model_dir, {"task": 3, "extra": 4})
    return v1, v2


@pytest.fixture(scope="module")
def server(family: tuple[Path, Path]):
    # Two client keys; KEY_B is also the one review key (the review API and /admin/reload).
    s = Server(family[0], api_key=KEY_A, env={"VERTICALIZE_API_KEY": f"{KEY_A},{KEY_B}",
                                              "VERTICALIZE_REVIEW_KEY": KEY_B})
    yield s
    s.stop()


def _h(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _chat(server: Server, model: str = "task", key: str = KEY_A, max_tokens: int = 8) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", headers=_h(key), timeout=120,
                      json={"model": model, "messages": [{"role": "user", "content": "annual fee?"}],
                            "max_tokens": max_tokens, "temperature": 0})


def test_review_queue_over_http(server: Server, family: tuple[Path, Path]):
    rid = _chat(server).json()["id"]
    fb = httpx.post(f"{server.url}/v1/feedback", headers=_h(KEY_A),
                    json={"response_id": rid, "rating": -1, "correction": "88 yuan"})
    assert fb.status_code == 200 and fb.json()["status"] == "pending"
    fid = fb.json()["id"]
    pending = httpx.get(f"{server.url}/v1/feedback", params={"status": "pending"}, headers=_h(KEY_B))
    assert pending.status_code == 200
    row = next(r for r in pending.json()["data"] if r["id"] == fid)
    assert row["key_fingerprint"] == hashlib.sha256(KEY_A.encode()).hexdigest()[:8]
    assert row["correction"] == "88 yuan" and row["question"] == "annual fee?" and KEY_A not in pending.text

    def review(fid: int | str, decision: str, key: str | None, **body) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/feedback/{fid}/{decision}", headers=_h(key), json=body or None)

    client = review(fid, "approve", KEY_A)  # a client key is not a review key
    assert client.status_code == 403 and client.json()["error"]["code"] == "not_a_reviewer"
    assert client.json()["error"]["type"] == "permission_error"
    assert httpx.get(f"{server.url}/v1/feedback", headers=_h(KEY_A)).status_code == 403
    assert review(fid, "approve", None).status_code == 401
    assert review(fid, "approve", "wrong-key").status_code == 401
    own_id = httpx.post(f"{server.url}/v1/feedback", headers=_h(KEY_B),
                        json={"response_id": rid, "rating": 5}).json()["id"]
    own = review(own_id, "approve", KEY_B)  # nor can the key that sent feedback approve it
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_review"
    missing = review(999999, "approve", KEY_B)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "feedback_not_found"
    assert review(fid, "maybe", KEY_B).json()["error"]["type"] == "invalid_request_error"
    bad = httpx.get(f"{server.url}/v1/feedback", params={"status": "bogus"}, headers=_h(KEY_B))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    ok = review(fid, "approve", KEY_B, reviewer="rev", note="matches the fee table")
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "approved" and ok.json()["reviewer"] == "rev"
    approved = httpx.get(f"{server.url}/v1/feedback", params={"status": "approved"}, headers=_h(KEY_B)).json()
    assert [r["id"] for r in approved["data"]] == [fid]
    for f in (family[0] / "feedback").iterdir():  # the keys themselves are stored nowhere
        assert KEY_A.encode() not in f.read_bytes() and KEY_B.encode() not in f.read_bytes()


def test_reload_switches_the_adapters_without_dropping_a_request(server: Server, family: tuple[Path, Path],
                                                                 tiny_model_dir: Path):
    v1, v2 = family
    models = lambda: [m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=_h(KEY_A)).json()["data"]]
    assert models() == [tiny_model_dir.name, "domain", "task"]
    before = _chat(server).json()["id"]  # answered by v1, recorded in v1's store

    # Not a version of the served run: refused, nothing loaded.
    for run in (str(v1.parent), "/etc", str(v1.parent / "other")):
        r = httpx.post(f"{server.url}/admin/reload", headers=_h(KEY_B), json={"run": run})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_run", r.text
    assert httpx.post(f"{server.url}/admin/reload", json={"run": str(v2)}).status_code == 401
    assert httpx.post(f"{server.url}/admin/reload", headers=_h(KEY_A), json={"run": str(v2)}).status_code == 403

    stop, results, lock = threading.Event(), [], threading.Lock()

    def hammer(stream: bool) -> None:
        while not stop.is_set():
            started = time.monotonic()
            body = {"model": "task", "messages": [{"role": "user", "content": "long answer"}], "max_tokens": 64,
                    "temperature": 0, "stream": stream}
            try:
                r = httpx.post(f"{server.url}/v1/chat/completions", headers=_h(KEY_A), json=body, timeout=120)
                ok = r.status_code == 200 and (not stream or "data: [DONE]" in r.text)
                outcome = "ok" if ok else f"{r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                outcome = repr(e)
            with lock:
                results.append((started, time.monotonic(), outcome))

    threads = [threading.Thread(target=hammer, args=(i % 2 == 1,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    sent = time.monotonic()
    reload = httpx.post(f"{server.url}/admin/reload", headers=_h(KEY_B), json={"run": str(v2)}, timeout=300)
    switched = time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(start > switched for start, _, _ in list(results)):
        time.sleep(0.2)  # until a request asked after the switch was answered
    stop.set()
    for t in threads:
        t.join(180)
    assert reload.status_code == 200, reload.text
    body = reload.json()
    assert body["run"] == str(v2.resolve()) and body["previous_run"] == str(v1.resolve())
    assert body["models"] == [tiny_model_dir.name, "extra", "task"]
    assert body["finishing_on_previous"] >= 1  # a generation was running on v1 at the switch, and finished
    failures = [o for _, _, o in results if o != "ok"]
    assert not failures, failures[:3]
    assert any(start < sent and end > switched for start, end, _ in results)  # asked of v1, answered after it
    assert any(start > switched for start, _, _ in results)  # asked of v2

    assert models() == [tiny_model_dir.name, "extra", "task"]
    assert _chat(server, "extra").status_code == 200
    gone = _chat(server, "domain")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    # Feedback on an answer v1 gave before the switch still finds its response (and lands in v2's queue).
    fb = httpx.post(f"{server.url}/v1/feedback", headers=_h(KEY_A), json={"response_id": before, "rating": 1})
    assert fb.status_code == 200, fb.text
    queue = httpx.get(f"{server.url}/v1/feedback", headers=_h(KEY_B)).json()["data"]
    assert [r["response_id"] for r in queue] == [before]
    assert (v2 / "feedback" / "feedback.sqlite").is_file()
