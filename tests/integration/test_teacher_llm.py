"""The ``llm`` generator and TeacherClient against a real OpenAI-compatible HTTP server on loopback.

The server is a small FastAPI app run by uvicorn in a background thread; it answers /v1/chat/completions like a
chat model would (reasoning ``<think>`` replies, fenced JSON, a malformed reply, 500/429 on a first try) and counts
the requests it receives. Everything goes through the real ``openai`` client.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from verticalize.config import AugmentConfig, DataConfig, TeacherConfig
from verticalize.data.augment import augment
from verticalize.data.generators import make_generators
from verticalize.data.schema import make_example
from verticalize.json_reply import ReplyParseError
from verticalize.openai_client import TeacherClient, TeacherConfigError, TeacherError

API_KEY = "sk-test-secret-123"


TRANSLATIONS = {"信用卡年费是多少？": "How much is the credit card's annual fee?",
                "How much is the credit card's annual fee?": "信用卡的年费是多少？",
                "What must the borrower do?": "借款人必须做什么？",
                "借款人必须做什么？": "What is the borrower required to do?"}
PARAPHRASES = {"What must the borrower do?": "What is the borrower obliged to do?"}


class FakeChatModel:
    """Replies chosen from markers in the prompt; ``hits`` counts requests per marker, ``total`` all of them."""

    def __init__(self) -> None:
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.hits: Counter = Counter()
        self.auth: list[str] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.completions)

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.total += 1
        self.auth.append(request.headers.get("authorization", ""))
        user = body["messages"][-1]["content"]
        marker = next((m for m in ("ALWAYS500", "FLAKY500", "FLAKY429", "MALFORMED", "SLOW", "HANG") if m in user),
                      "plain")
        self.hits[marker] += 1
        if marker in ("SLOW", "HANG"):  # a model busy generating: lets requests overlap, or outlast the timeout
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            await asyncio.sleep(0.3 if marker == "SLOW" else 3.0)
            self.in_flight -= 1
        if marker == "ALWAYS500" or (marker == "FLAKY500" and self.hits[marker] == 1):
            return JSONResponse({"error": {"message": "internal error"}}, status_code=500)
        if marker == "FLAKY429" and self.hits[marker] == 1:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"retry-after": "0"})
        return JSONResponse(self._completion(body["model"], self._reply(user, marker)))

    @staticmethod
    def _reply(user: str, marker: str) -> str:
        if marker == "MALFORMED":
            return "Sorry, I cannot produce that format today."
        if user.startswith(("Translate into", "Reword this question")):  # augmentation requests
            text = user.split(":\n", 1)[1].split("\n\nReply", 1)[0]
            key = "paraphrase" if user.startswith("Reword") else "translation"
            table = PARAPHRASES if key == "paraphrase" else TRANSLATIONS
            return f"<think>rewording</think>{json.dumps({key: table.get(text, text)}, ensure_ascii=False)}"
        if "Question:" in user:  # the answer step: fenced JSON after some chatter
            question = user.split("Question:", 1)[1].split("\n", 1)[0].strip()
            answer = "30 days" if "deadline" in question else "100 USD"
            return f"Here is the answer:\n```json\n{json.dumps({'answer': answer})}\n```\nHope it helps."
        # the question step: a reasoning model's reply
        return ("<think>The passage talks about fees and deadlines {not json}.</think>\n"
                '{"questions": ["What is the annual fee?", "What is the repayment deadline?",]}')

    @staticmethod
    def _completion(model: str, text: str) -> dict:
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@pytest.fixture()
def chat_server():
    model = FakeChatModel()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(model.app, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=0.1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "loopback chat server did not start"
    yield model, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def _chunks() -> list[dict]:
    return [
        {"id": "d1:0000", "doc_id": "d1", "source": "cards.md", "title": "", "lang": "en", "start": 0,
         "text": "The annual fee is 100 USD. The repayment deadline is 30 days after the statement."},
        {"id": "d2:0000", "doc_id": "d2", "source": "broken.md", "title": "", "lang": "en", "start": 0,
         "text": "MALFORMED passage that makes the teacher misbehave."},
        {"id": "d3:0000", "doc_id": "d3", "source": "flaky.md", "title": "", "lang": "en", "start": 0,
         "text": "FLAKY500 The annual fee is 100 USD for the gold card."},
        {"id": "d4:0000", "doc_id": "d4", "source": "busy.md", "title": "", "lang": "en", "start": 0,
         "text": "FLAKY429 Repayment deadline: 30 days."},
    ]


def _llm_config(base_url: str) -> DataConfig:
    return DataConfig(generator="llm", max_per_chunk=2,
                      teacher=TeacherConfig(base_url=base_url, model="teacher-x", concurrency=2, max_retries=2,
                                            timeout_s=10))


def test_llm_generator_distils_retries_caches_and_counts(chat_server, tmp_path: Path, monkeypatch) -> None:
    server, base_url = chat_server
    monkeypatch.setenv("VERTICALIZE_TEACHER_API_KEY", API_KEY)
    [generator] = make_generators(_llm_config(base_url), cache_dir=tmp_path / "cache")
    examples = list(generator.generate(_chunks()))

    # 3 good chunks x 2 questions each; the malformed chunk yields nothing and is reported.
    assert [(e["meta"]["doc_id"], e["meta"]["question"], e["meta"]["answer"]) for e in examples] == [
        ("d1", "What is the annual fee?", "100 USD"), ("d1", "What is the repayment deadline?", "30 days"),
        ("d3", "What is the annual fee?", "100 USD"), ("d3", "What is the repayment deadline?", "30 days"),
        ("d4", "What is the annual fee?", "100 USD"), ("d4", "What is the repayment deadline?", "30 days")]
    first = examples[0]
    assert first["messages"] == [{"role": "user", "content": "What is the annual fee?"},
                                 {"role": "assistant", "content": "100 USD"}]
    assert first["meta"]["kind"] == "synthetic" and first["meta"]["generator"] == "llm"
    assert first["meta"]["chunk_ids"] == ["d1:0000"] and first["meta"]["source"] == "cards.md"
    assert len({e["id"] for e in examples}) == 6

    report = generator.report()
    usage = report["teacher_usage"]
    # 4 question calls + 6 answer calls; the 500 and the 429 were each retried once.
    assert usage["calls"] == 10 and usage["retries"] == 2 and usage["requests"] == 12 == server.total
    assert server.hits["FLAKY500"] == 4 and server.hits["FLAKY429"] == 4  # failed + retried question, 2 answers
    assert usage["parse_failures"] == 1 and usage["failures"] == 0 and usage["cache_hits"] == 0
    assert usage["prompt_tokens"] == 10 * 10 and usage["completion_tokens"] == 5 * 10
    assert report["problems"][0]["chunk_id"] == "d2:0000" and "no JSON" in report["problems"][0]["reason"]
    assert report["counts"]["failed_chunks"] == 1 and report["counts"]["answers"] == 6
    # The key went to the server as a bearer token and is in no report.
    assert set(server.auth) == {f"Bearer {API_KEY}"}
    assert API_KEY not in json.dumps(report) and API_KEY not in repr(generator.teacher)

    # A rerun on the same cache sends nothing and produces the same examples.
    [again] = make_generators(_llm_config(base_url), cache_dir=tmp_path / "cache")
    assert list(again.generate(_chunks())) == examples
    rerun = again.report()["teacher_usage"]
    assert server.total == 12
    assert rerun["cache_hits"] == 10 and rerun["requests"] == 0 and rerun["prompt_tokens"] == 0
    assert rerun["parse_failures"] == 1  # the cached malformed reply is still malformed, and still counted


def test_teacher_gives_up_after_max_retries(chat_server, tmp_path: Path) -> None:
    server, base_url = chat_server
    teacher = TeacherClient(base_url, "teacher-x", max_retries=2, backoff_s=0.01, cache_dir=tmp_path)
    with pytest.raises(TeacherError, match=r"failed after 3 attempt\(s\).*InternalServerError"):
        teacher.chat([{"role": "user", "content": "ALWAYS500 hello"}])
    assert server.hits["ALWAYS500"] == 3
    assert teacher.usage.failures == 1 and teacher.usage.retries == 2
    # Failures are not cached: a later call asks again.
    with pytest.raises(TeacherError):
        teacher.chat([{"role": "user", "content": "ALWAYS500 hello"}])
    assert server.hits["ALWAYS500"] == 6


def test_complete_json_counts_parse_failures_and_keeps_the_reply(chat_server, tmp_path: Path) -> None:
    _, base_url = chat_server
    teacher = TeacherClient(base_url, "teacher-x", cache_dir=tmp_path)
    with pytest.raises(ReplyParseError) as err:
        teacher.complete_json([{"role": "user", "content": "MALFORMED"}])
    assert "cannot produce that format" in err.value.reply
    assert teacher.usage.parse_failures == 1
    reply = teacher.complete_json([{"role": "user", "content": "Question: the deadline?\n"}])
    assert reply == {"answer": "30 days"}


def test_cache_key_depends_on_model_and_params(chat_server, tmp_path: Path) -> None:
    server, base_url = chat_server
    messages = [{"role": "user", "content": "Question: the fee?\n"}]
    a = TeacherClient(base_url, "teacher-x", cache_dir=tmp_path)
    a.chat(messages)
    a.chat(messages)
    a.chat(messages, temperature=0.9)
    TeacherClient(base_url, "teacher-y", cache_dir=tmp_path).chat(messages)
    assert server.total == 3 and a.usage.cache_hits == 1


def test_missing_teacher_config_is_a_clear_config_error(monkeypatch) -> None:
    monkeypatch.delenv("VERTICALIZE_TEACHER_BASE_URL", raising=False)
    monkeypatch.delenv("VERTICALIZE_TEACHER_MODEL", raising=False)
    with pytest.raises(TeacherConfigError, match=r"data\.teacher\.base_url and data\.teacher\.model.*"
                                                 r"VERTICALIZE_TEACHER_BASE_URL"):
        make_generators(DataConfig(generator="llm"))


def test_teacher_endpoint_from_environment(chat_server, tmp_path: Path, monkeypatch) -> None:
    server, base_url = chat_server
    monkeypatch.setenv("VERTICALIZE_TEACHER_BASE_URL", base_url)
    monkeypatch.setenv("VERTICALIZE_TEACHER_MODEL", "env-model")
    teacher = TeacherClient.from_config(TeacherConfig(), cache_dir=tmp_path)
    assert teacher.model == "env-model"
    assert re.search("100 USD", teacher.chat([{"role": "user", "content": "Question: the fee?\n"}]))
    assert server.total == 1


def test_back_translation_and_paraphrase_through_the_teacher(chat_server, tmp_path: Path) -> None:
    server, base_url = chat_server
    chunk = {"id": "d1:0000", "doc_id": "d1", "source": "cards.md"}
    parents = [make_example("信用卡年费是多少？", "100元", kind="synthetic", generator="rules:amount", chunk=chunk),
               make_example("What must the borrower do?", "The borrower must repay on time.", kind="synthetic",
                            generator="rules:obligation", chunk=chunk)]
    teacher = TeacherClient(base_url, "teacher-x", cache_dir=tmp_path, concurrency=2)
    cfg = AugmentConfig(list_reorder=False, back_translation=True, paraphrase=True, max_per_example=2)
    made, counts = augment(parents, cfg, teacher=teacher, seed=0)
    got = sorted((e["meta"]["generator"], e["meta"]["parent_id"], e["meta"]["question"], e["meta"]["answer"])
                 for e in made)
    assert got == sorted([
        ("augment:back_translation", parents[0]["id"], "信用卡的年费是多少？", "100元"),
        ("augment:back_translation", parents[1]["id"], "What is the borrower required to do?",
         "The borrower must repay on time."),
        ("augment:paraphrase", parents[1]["id"], "What is the borrower obliged to do?",
         "The borrower must repay on time.")])
    # The Chinese paraphrase came back unchanged and was refused, with its reason.
    assert counts == {"made:back_translation": 2, "made:paraphrase": 1, "paraphrase:unchanged": 1}
    assert server.total == 6 and teacher.usage.requests == 6  # 2 x (there and back) + 2 paraphrases
    # Rerun: all from the cache, same result.
    again, _ = augment(parents, cfg, teacher=TeacherClient(base_url, "teacher-x", cache_dir=tmp_path), seed=0)
    assert again == made and server.total == 6


def test_concurrency_limit_holds_across_threads(chat_server, tmp_path: Path) -> None:
    server, base_url = chat_server
    teacher = TeacherClient(base_url, "teacher-x", concurrency=2, cache_dir=tmp_path)
    replies = teacher.map(lambda i: teacher.chat([{"role": "user", "content": f"SLOW {i}"}]), range(6))
    assert len(replies) == 6 and server.hits["SLOW"] == 6
    assert server.max_in_flight == 2


def test_timeout_is_retried_then_reported(chat_server, tmp_path: Path) -> None:
    server, base_url = chat_server
    teacher = TeacherClient(base_url, "teacher-x", timeout_s=0.5, max_retries=1, backoff_s=0.01, cache_dir=tmp_path)
    started = time.perf_counter()
    with pytest.raises(TeacherError, match=r"failed after 2 attempt\(s\).*APITimeoutError"):
        teacher.chat([{"role": "user", "content": "HANG"}])
    assert time.perf_counter() - started < 2.5  # two 0.5 s timeouts, not two 3 s replies
    assert server.hits["HANG"] == 2 and teacher.usage.failures == 1 and teacher.usage.retries == 1


def test_verticalize_own_gateway_serves_as_teacher(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The project's own OpenAI-compatible server as the teacher: requests, usage and the cache interoperate.

    The tiny random model cannot write JSON, so every question step is a counted parse failure, not a crash.
    """
    from verticalize.artifacts import RunDir
    from verticalize.config import load_config
    from verticalize.data.teacher_generator import LLMGenerator
    from verticalize.serve import build_gateway, create_app

    cfg = load_config(None, [f"model.base={tiny_model_dir}", f"project.run_dir={tmp_path / 'run'}"])
    app = create_app(build_gateway(cfg, RunDir(tmp_path / "run")))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=0.1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        teacher = TeacherClient(base_url, Path(tiny_model_dir).name, max_tokens=8, temperature=0.0,
                                cache_dir=tmp_path / "cache")
        generator = LLMGenerator(teacher, max_per_chunk=2)
        assert list(generator.generate(_chunks()[:2])) == []
        usage = teacher.usage.to_dict()
        assert usage["requests"] == 2 and usage["parse_failures"] == 2 and usage["failures"] == 0
        assert usage["prompt_tokens"] > 50 and 0 < usage["completion_tokens"] <= 16
        assert generator.report()["counts"]["failed_chunks"] == 2
        rerun = TeacherClient(base_url, Path(tiny_model_dir).name, max_tokens=8, temperature=0.0,
                              cache_dir=tmp_path / "cache")
        assert list(LLMGenerator(rerun, max_per_chunk=2).generate(_chunks()[:2])) == []
        assert rerun.usage.cache_hits == 2 and rerun.usage.requests == 0
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
