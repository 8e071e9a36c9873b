"""The LLM judge through the real teacher client and openai client against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from verticalize.config import TeacherConfig
from verticalize.evaluate.judge import judge_answer, judge_pair, judge_rung
from verticalize.openai_client import TeacherClient


def _field(text: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


def _grade(system: str, user: str) -> str:
    """A deterministic judge: facts match when the candidate contains the reference; it also has a position bias
    (it answers A when undecided), which the both-orders rule must cancel."""
    ref = _field(user, "Reference answer")
    if "SCORE" in system:
        cand = _field(user, "Candidate answer")
        return "SCORE: 5\nREASON: same facts" if ref in cand else "SCORE: 2\nREASON: 事实不符"
    a, b = _field(user, "Answer A"), _field(user, "Answer B")
    if (ref in a) == (ref in b):
        return "WINNER: A\nREASON: first looks fine"
    return f"WINNER: {'A' if ref in a else 'B'}\nREASON: matches the reference"


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append(body)
        msgs = body["messages"]
        reply = _grade(msgs[0]["content"], msgs[1]["content"])
        payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": reply}}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def judge_client(tmp_path: Path) -> Iterator[TeacherClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    cfg = TeacherConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="judge-model",
                        max_retries=0, timeout_s=10)
    client = TeacherClient.from_config(cfg, cache_dir=tmp_path / "cache")
    yield client
    server.shutdown()
    server.server_close()


def test_pointwise_score_and_reason_at_temperature_zero(judge_client: TeacherClient) -> None:
    good = judge_answer(judge_client, "年费多少？", "300元", "年费是300元。")
    bad = judge_answer(judge_client, "年费多少？", "300元", "500元")
    assert good == {"score": 5, "reason": "same facts"} and bad == {"score": 2, "reason": "事实不符"}
    assert all(r["temperature"] == 0.0 for r in _Handler.requests)
    assert _Handler.requests[0]["model"] == "judge-model"


def test_pairwise_asks_both_orders_and_cancels_position_bias(judge_client: TeacherClient) -> None:
    win = judge_pair(judge_client, "fee?", "300 yuan", "It is 300 yuan", "It is 500 yuan")
    assert win["outcome"] == "win" and win["orders"] == ["A", "B"]
    loss = judge_pair(judge_client, "fee?", "300 yuan", "It is 500 yuan", "It is 300 yuan")
    assert loss["outcome"] == "loss"
    # Both wrong: the biased judge says A in both orders -> disagreement -> tie, not a win for either.
    tie = judge_pair(judge_client, "fee?", "300 yuan", "no idea", "maybe 100")
    assert tie == {"outcome": "tie", "orders": ["A", "A"], "reasons": ["first looks fine", "first looks fine"]}


def test_judge_rung_metrics_and_stored_verdicts(judge_client: TeacherClient) -> None:
    rows = [{"question": "q1", "reference": ["300元"], "prediction": "300元"},
            {"question": "q2", "reference": ["90天"], "prediction": "30天"}]
    base = [{"question": "q1", "reference": ["300元"], "prediction": "不知道"},
            {"question": "q2", "reference": ["90天"], "prediction": "60天"}]
    metrics = judge_rung(judge_client, rows, base)
    # scores 5 and 2 -> (4/4 + 1/4) / 2; pairs: win and tie -> (1 + 0.5) / 2
    assert metrics == {"judge_score": pytest.approx(0.625), "judge_win_rate": pytest.approx(0.75)}
    assert rows[0]["judge"] == {"score": 5, "reason": "same facts"} and rows[1]["judge_pair"]["outcome"] == "tie"
