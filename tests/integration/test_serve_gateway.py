"""Black-box tests of the gateway: a real server process on loopback, driven by the real `openai` client."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ServerProcess as Server
from conftest import free_port, make_lora_adapter, require_program
from verticalize.artifacts import write_jsonl

API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("run")
    adapters = run / "train" / "adapters"
    make_lora_adapter(tiny_model_dir, adapters / "task", 1)
    make_lora_adapter(tiny_model_dir, adapters / "domain", 2)
    chunks = [{"id": "d1:0000", "doc_id": "d1", "source": "rules.md", "title": "", "start": 0, "lang": "en",
               "text": "The annual fee of the Harbor card is 88 yuan, waived after six purchases."},
              {"id": "d2:0000", "doc_id": "d2", "source": "ops.md", "title": "", "start": 0, "lang": "en",
               "text": "Restart the ledger service with ledgerctl restart on port 7443."}]
    write_jsonl(run / "ingest" / "chunks.jsonl", chunks)
    from verticalize.config import KBConfig
    from verticalize.kb import build_kb

    build_kb(run / "ingest" / "chunks.jsonl", run / "kb", KBConfig())
    write_jsonl(run / "data" / "train.jsonl", [{"id": "q1", "messages": [
        {"role": "user", "content": "What is the annual fee of the Harbor card?"},
        {"role": "assistant", "content": "88 yuan"}], "meta": {"question": "What is the annual fee?"}}])
    (run / "config.yaml").write_text(
        f"model:\n  base: {tiny_model_dir}\nserve:\n  max_concurrency: 1\n  max_queue: 1\n"
        f"  max_output_tokens: 64\n  rag_adapters: [domain]\n", encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def server(served_run: Path):
    s = Server(served_run, api_key=API_KEY)
    yield s
    s.stop()


def test_models_lists_base_and_adapters(server: Server, tiny_model_dir: Path):
    ids = [m.id for m in server.client().models.list().data]
    assert ids == [tiny_model_dir.name, "domain", "task"]


def test_chat_with_two_adapters_and_usage(server: Server, tiny_model_dir: Path):
    client = server.client()
    outs = {}
    for model in ("task", "domain", tiny_model_dir.name):
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "annual fee?"}],
                                           max_tokens=8, temperature=0)
        assert r.model == model and r.choices[0].message.role == "assistant"
        assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 3
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        outs[model] = r.choices[0].message.content
    # Random adapters with different seeds change the output: the adapter really is chosen per request.
    assert len(set(outs.values())) >= 2


def test_rag_profile_and_override(server: Server):
    client = server.client()
    r = client.chat.completions.create(model="domain", messages=[{"role": "user", "content": "Harbor annual fee"}],
                                       max_tokens=4, temperature=0)
    sources = r.model_extra["sources"]
    assert sources and sources[0]["chunk_id"] == "d1:0000"
    r = client.chat.completions.create(model="task", messages=[{"role": "user", "content": "Harbor annual fee"}],
                                       max_tokens=4, temperature=0)
    assert r.model_extra["sources"] == []
    r = client.chat.completions.create(model="task", messages=[{"role": "user", "content": "ledger restart port"}],
                                       max_tokens=4, temperature=0, extra_body={"rag": True})
    assert r.model_extra["sources"][0]["chunk_id"] == "d2:0000"


def test_streaming_matches_non_streaming(server: Server):
    client = server.client()
    kwargs = dict(model="task", messages=[{"role": "user", "content": "hello"}], max_tokens=12, temperature=0)
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    stream = client.chat.completions.create(stream=True, **kwargs)
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == full and finish in ("stop", "length")


def test_completions_and_stop(server: Server):
    client = server.client()
    r = client.completions.create(model="task", prompt="The fee is", max_tokens=10, temperature=0)
    text = r.choices[0].text
    assert r.usage.completion_tokens >= 1
    if len(text) > 2:
        stop = text[1:3]
        r2 = client.completions.create(model="task", prompt="The fee is", max_tokens=10, temperature=0, stop=[stop])
        assert r2.choices[0].text == text[: text.index(stop)]


def test_bad_requests_have_openai_error_shape(server: Server):
    client = server.client()
    with pytest.raises(openai.AuthenticationError):
        server.client("wrong").models.list()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="../../etc", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "invalid_model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="task", messages=[{"role": "user", "content": "x"}], max_tokens=10_000)
    assert e.value.body["param"] == "max_tokens"
    r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "task"},
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_over_capacity_gets_429(server: Server):
    # max_concurrency 1 + max_queue 1: of several simultaneous long requests, some must be refused with 429.
    import concurrent.futures as cf

    def call() -> int:
        r = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                       headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"model": "task", "messages": [{"role": "user", "content": "long"}], "max_tokens": 64,
                             "temperature": 0})
        return r.status_code

    with cf.ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: call(), range(6)))
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}


def test_feedback_survives_kill_9(served_run: Path):
    s = Server(served_run, api_key=API_KEY)
    try:
        client = s.client()
        r = client.chat.completions.create(model="task", temperature=0, max_tokens=4, messages=[
            {"role": "user", "content": "call me at 13812345678 about the fee"}])
        fb = httpx.post(f"{s.url}/v1/feedback", headers={"Authorization": f"Bearer {API_KEY}"},
                        json={"response_id": r.id, "rating": -1, "correction": "88 yuan"})
        assert fb.status_code == 200
        bad = httpx.post(f"{s.url}/v1/feedback", headers={"Authorization": f"Bearer {API_KEY}"},
                         json={"response_id": "nope", "rating": 1})
        assert bad.status_code == 404
    finally:
        s.stop(signal.SIGKILL)
    db = served_run / "feedback" / "feedback.sqlite"
    conn = sqlite3.connect(db)
    request_json, = conn.execute("SELECT request FROM responses WHERE id=?", (r.id,)).fetchone()
    assert "13812345678" not in request_json  # PII-redacted before it is stored
    assert conn.execute("SELECT correction, status FROM feedback WHERE response_id=?",
                        (r.id,)).fetchone() == ("88 yuan", "pending")

    def export() -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "verticalize", "feedback", "export", str(served_run)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return [json.loads(x) for x in (served_run / "feedback" / "seed.jsonl").read_text().splitlines()]

    assert not any(row["messages"][1]["content"] == "88 yuan" for row in export())  # not reviewed: not exported
    review = subprocess.run([sys.executable, "-m", "verticalize", "feedback", "review", str(served_run),
                             "--approve", str(fb.json()["id"]), "--reviewer", "tester"], capture_output=True, text=True)
    assert review.returncode == 0, review.stderr
    assert any(row["messages"][1]["content"] == "88 yuan" and row["meta"]["kind"] == "seed" for row in export())


def test_metrics_count_requests(server: Server):
    server.client().chat.completions.create(model="task", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    text = httpx.get(f"{server.url}/metrics", headers=server.auth).text
    assert 'verticalize:requests_total{adapter="task",rung="peft",status="200"}' in text
    assert "verticalize:time_to_first_token_seconds_bucket" in text
    assert 'verticalize:e2e_request_latency_seconds_count{adapter="task"}' in text


def test_real_prometheus_scrapes_requests(server: Server, tmp_path: Path):
    prometheus = require_program("prometheus")
    client = server.client()
    for _ in range(3):
        client.chat.completions.create(model="domain", messages=[{"role": "user", "content": "fee"}], max_tokens=2)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    (tmp_path / "key").write_text(API_KEY, encoding="utf-8")  # /metrics is behind the key, as in deploy/
    cfg.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: verticalize\n"
                   f"    authorization: {{credentials_file: {tmp_path / 'key'}}}\n"
                   f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n", encoding="utf-8")
    proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        query = 'sum(verticalize:requests_total{adapter="domain",status="200"})'
        value = None
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=2)
                result = r.json()["data"]["result"]
                if result:
                    value = float(result[0]["value"][1])
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert value is not None and value >= 3
    finally:
        proc.terminate()
        proc.wait(timeout=20)
