"""Stop strings and end of sequence END generation (not only the returned text), and a request the gateway gave up
on (timed out, client gone) stops generating and holds its slot until it has: `max_concurrency` bounds the
generations really running.

The tiny random model answers "0123456789" with "89898989898989mumumu…" (greedy, measured), so the stop string
"mu" falls after a few tokens; a long answer (1 900 tokens) takes several seconds on one CPU thread, far longer
than the bounds these tests allow for stopping.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import ServerProcess, free_port
from verticalize.engine import Cancellation, EmbeddedEngine, GenerationRequest

PROMPT, STOP = "0123456789", "mu"
LONG = 1900  # tokens: several seconds of generation (the tiny model's positions end at 2048)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> EmbeddedEngine:
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return EmbeddedEngine(model, tokenizer, "tiny", max_batch=8, batch_window_s=0.2)


def _req(max_tokens: int, stop: list[str] | None = None, prompt: str = PROMPT) -> GenerationRequest:
    return GenerationRequest(model="tiny", prompt=prompt, max_tokens=max_tokens, temperature=0, stop=stop)


def _until(predicate, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ----------------------------------------------------------------------------------------------- the engine
def test_stop_string_ends_generation_and_cuts_the_same_text(engine: EmbeddedEngine):
    s = engine.scheduler
    steps = s.decode_steps
    full = engine.generate(_req(48))
    full_steps = s.decode_steps - steps
    assert full.finish_reason == "length" and full.completion_tokens == full_steps == 48
    assert STOP in full.text

    steps = s.decode_steps
    pieces: list[str] = []
    cut = engine.generate(_req(48, [STOP]), on_text=pieces.append)
    cut_steps = s.decode_steps - steps
    assert cut.text == full.text[: full.text.index(STOP)] == "".join(pieces)
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens == cut_steps < 48  # generation ended at the stop string
    print(f"stop string: {cut_steps} decode steps instead of {full_steps}")


def test_each_row_of_a_batch_ends_on_its_own(engine: EmbeddedEngine):
    """Rows with a stop string end at it, the batch ends when its last row does; a row's answer comes back when the
    row ends, not when the batch does."""
    alone = engine.generate(_req(400, [STOP]))
    s = engine.scheduler
    batches, steps = s.batches_run, s.decode_steps
    with cf.ThreadPoolExecutor(3) as pool:
        rows = list(pool.map(engine.generate, [_req(400, [STOP]), _req(400, [STOP]), _req(24, prompt="hello")]))
    assert s.batches_run - batches == 1  # one generate() call for the three
    assert [r.text for r in rows[:2]] == [alone.text] * 2 and rows[0].finish_reason == "stop"
    assert rows[2].completion_tokens == 24
    assert s.decode_steps - steps == 24 < 400  # not the largest max_tokens: every row had ended

    done_at: dict[str, float] = {}

    def timed(name: str, req: GenerationRequest) -> None:
        engine.generate(req)
        done_at[name] = time.perf_counter()

    with cf.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda a: timed(*a), [("short", _req(300, [STOP])), ("long", _req(300))]))
    assert done_at["long"] - done_at["short"] > 0.2  # the short row's caller did not wait for the long row


def test_cancelled_generation_stops_within_a_step(engine: EmbeddedEngine):
    s = engine.scheduler
    cancel = Cancellation()
    first_piece = threading.Event()
    with cf.ThreadPoolExecutor(2) as pool:
        running = pool.submit(engine.generate, _req(LONG, prompt="hello"), lambda _: first_piece.set(), cancel)
        assert first_piece.wait(30)
        time.sleep(0.2)  # well into the generation
        queued_cancel = Cancellation()
        rows = s.rows_run
        queued = pool.submit(engine.generate, _req(LONG), None, queued_cancel)
        assert _until(lambda: s.active == 2, 5)
        queued_cancel.cancel()  # still waiting for the worker: it never runs
        assert queued.result(timeout=2).finish_reason == "cancelled"
        started = time.perf_counter()
        cancel.cancel()
        result = running.result(timeout=5)
        stopped_in = time.perf_counter() - started
    assert result.finish_reason == "cancelled" and 0 < result.completion_tokens < LONG
    assert stopped_in < 1.0
    assert s.rows_run == rows and s.active == 0  # the cancelled queued request never became a row
    print(f"cancelled after {result.completion_tokens} of {LONG} tokens, stopped {stopped_in * 1000:.0f} ms later")


# ----------------------------------------------------------------------------------------------- the gateway
def _running(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return float(re.search(r"^verticalize:num_requests_running (\S+)$", text, re.M).group(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    run = tmp_path_factory.mktemp("stopping-run")  # the base model alone
    # The embedded engine: on the tiny model it takes seconds for LONG tokens, so a request really times out
    # mid-generation (the OpenVINO engine's cancellation: test_openvino_engine.py).
    (run / "config.yaml").write_text(f"model:\n  base: {tiny_model_dir}\n  dtype: float32\nserve:\n"
                                     f"  engine: embedded\n  max_concurrency: 2\n  max_queue: 16\n"
                                     f"  max_output_tokens: {LONG}\n"
                                     "  request_timeout_s: 2\n", encoding="utf-8")
    s = ServerProcess(run, env={"OMP_NUM_THREADS": "1"})
    yield s
    s.stop()


def test_served_stop_string_ends_generation(server: ServerProcess, tiny_model_dir: Path):
    client = server.client()
    kwargs = dict(model=tiny_model_dir.name, prompt=PROMPT, max_tokens=200, temperature=0)
    full = client.completions.create(**kwargs)
    cut = client.completions.create(stop=[STOP], **kwargs)
    assert full.usage.completion_tokens == 200
    assert cut.choices[0].text == full.choices[0].text[: full.choices[0].text.index(STOP)]
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens < 20


def test_timed_out_request_stops_generating(server: ServerProcess, tiny_model_dir: Path):
    started = time.perf_counter()
    r = httpx.post(f"{server.url}/v1/completions", timeout=60,
                   json={"model": tiny_model_dir.name, "prompt": "hello", "max_tokens": LONG, "temperature": 0})
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert time.perf_counter() - started < 10
    # Run on, the generation would take seconds more; cancelled, it stops at its next decode step.
    assert _until(lambda: _running(server.url) == 0, 1.5)


def test_streaming_client_disconnect_stops_generating(server: ServerProcess, tiny_model_dir: Path):
    body = {"model": tiny_model_dir.name, "prompt": "hello", "max_tokens": LONG, "temperature": 0, "stream": True}
    started = time.perf_counter()
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{server.url}/v1/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            while not next(lines).startswith("data: {"):
                pass
            assert _running(server.url) == 1
    # The connection is closed: the gateway stops the generation well before the 2 s request timeout would.
    assert _until(lambda: _running(server.url) == 0, 1.0)
    assert time.perf_counter() - started < 1.8
    assert 'status="499"' in httpx.get(f"{server.url}/metrics", timeout=5).text  # counted as client-closed


def test_concurrency_bound_holds_under_load_with_timeouts(tiny_model_dir: Path, tmp_path: Path):
    """Twelve clients at a gateway of two slots; the long requests time out. The engine never has more than two
    requests at once (queued in it or generating): a timed-out request's slot is freed only once its generation
    has stopped. In-process, on a real loopback server, so the engine's own counter can be read."""
    import uvicorn

    from verticalize.serve.app import create_app
    from verticalize.serve.service import Gateway, GatewaySettings

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    engine = EmbeddedEngine(model, AutoTokenizer.from_pretrained(tiny_model_dir), "tiny", batch_window_s=0.01)
    gateway = Gateway(engine, GatewaySettings(max_concurrency=2, max_queue=16, max_output_tokens=LONG,
                                              request_timeout_s=1.0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert _until(lambda: server.started, 30)
    url = f"http://127.0.0.1:{port}"
    seen_running: list[float] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            seen_running.append(engine.scheduler.active)
            time.sleep(0.005)

    def one(i: int) -> int:
        long = i % 3 == 0
        body = {"model": "tiny", "prompt": PROMPT if long else "hello", "max_tokens": LONG if long else 16,
                "temperature": 0, "stream": i % 2 == 1}
        with httpx.Client(timeout=60) as http:
            if body["stream"]:
                with http.stream("POST", f"{url}/v1/completions", json=body) as r:
                    text = "".join(r.iter_lines())
                    return 504 if '"timeout"' in text else r.status_code
            return http.post(f"{url}/v1/completions", json=body).status_code

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with cf.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(one, range(12)))
        assert _until(lambda: engine.scheduler.active == 0 and gateway.slots._value == 2, 3)
    finally:
        sampling.set()
        server.should_exit = True
        thread.join(timeout=10)
    assert set(codes) <= {200, 504} and codes.count(504) >= 2 and codes.count(200) >= 4, codes
    assert all(codes[i] == 504 for i in range(0, 12, 3))  # every long request timed out
    assert engine.scheduler.peak_active <= 2 and max(seen_running) <= 2
    assert engine.scheduler.cancelled >= 4
    print(f"load: statuses {codes}, at most {engine.scheduler.peak_active} generations at once (bound 2)")
