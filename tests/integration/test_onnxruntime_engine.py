"""The ONNX Runtime engine on a tiny model: the same greedy answers as Transformers + PEFT (fp32 conversion), stop
strings and cancellation that end the generation, the model cache, close; and auto's split engine: a lone request
to ONNX Runtime, concurrent ones to OpenVINO's continuous batching, each result saying which engine answered."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import make_lora_adapter
from verticalize.artifacts import RunDir, read_adapters
from verticalize.config import load_config
from verticalize.engine import SplitEngine, open_local_engine
from verticalize.engine_api import Cancellation, GenerationRequest
from verticalize.models.tiny import build_tiny_model
from verticalize.onnxruntime_engine import OnnxRuntimeEngine, OnnxRuntimeUnavailable, served_onnx

PROMPTS = ["What is the annual fee of the card?", "Who may apply for a loan?", "逾期多少天停止计息？",
           "How do you restart the service?"]


@pytest.fixture(scope="module")
def lively(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunDir]:
    root = tmp_path_factory.mktemp("onnxruntime")
    model_dir = build_tiny_model(root / "model", weight_std=0.3)
    run = RunDir(root / "run")
    make_lora_adapter(model_dir, run.adapters_dir / "task", seed=3)
    return model_dir, run


def _cfg(model_dir: Path, *extra: str):
    # fp32 ONNX (ONNX Runtime then computes what Transformers computes in float32), f16 GGUF + f32 OpenVINO alike.
    return load_config(None, [f"model.base={model_dir}", "model.dtype=float32", "serve.onnxruntime_precision=fp32",
                              "serve.openvino_weights=f16", "serve.openvino_precision=f32", *extra])


@pytest.fixture(scope="module")
def engines(lively):
    model_dir, run = lively
    adapters = read_adapters(run)
    ort, choice = open_local_engine(_cfg(model_dir, "serve.engine=onnxruntime"), adapters, "base",
                                    run.engine_cache, max_batch=4)
    embedded, _ = open_local_engine(_cfg(model_dir, "serve.engine=embedded"), adapters, "base", run.engine_cache,
                                    max_batch=4)
    yield ort, embedded, choice
    ort.close()
    embedded.close()


def _ask(engine, model: str, question: str, max_tokens: int = 8, **kw):
    return engine.generate(GenerationRequest(model=model, messages=[{"role": "user", "content": question}],
                                             max_tokens=max_tokens, temperature=0.0, **kw))


def test_onnxruntime_answers_as_transformers_does(engines) -> None:
    ort, embedded, choice = engines
    assert isinstance(ort, OnnxRuntimeEngine) and choice["engine"] == "onnxruntime"
    assert ort.model_names() == ["base", "task"]
    answers = {}
    for model in ("base", "task"):
        for q in PROMPTS:
            got, want = _ask(ort, model, q), _ask(embedded, model, q)
            assert (got.text, got.completion_tokens, got.finish_reason, got.prompt_tokens) == \
                (want.text, want.completion_tokens, want.finish_reason, want.prompt_tokens), (model, q)
            answers[model, q] = got.text
    assert any(answers["base", q] != answers["task", q] for q in PROMPTS)  # the adapter is merged in


def test_a_killed_worker_fails_its_request_and_a_new_one_answers_the_next(engines) -> None:
    ort, embedded, _ = engines
    worker = ort._workers["task"]
    first_piece, outcome = threading.Event(), {}

    def long_answer() -> None:
        try:
            outcome["result"] = ort.generate(GenerationRequest(
                model="task", messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=1500, temperature=0.0),
                on_text=lambda piece: first_piece.set())
        except RuntimeError as e:
            outcome["error"] = str(e)

    caller = threading.Thread(target=long_answer)
    caller.start()
    assert first_piece.wait(30)
    old_pid = worker._process.pid
    os.kill(old_pid, signal.SIGKILL)  # what the kernel's OOM killer would do
    caller.join(60)
    assert outcome["error"] == ("the ONNX Runtime engine failed on this request: the ONNX Runtime worker process "
                                "ended unexpectedly (exit code -9)")
    again = _ask(ort, "task", PROMPTS[2])  # waits for the new worker if it is still loading
    assert worker.restarts == 1 and worker._process.pid != old_pid and worker.busy == 0
    assert again.text == _ask(embedded, "task", PROMPTS[2]).text


def _worker_processes() -> list[int]:
    """This process's live ONNX Runtime worker processes (not yet reaped ones included)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"verticalize.onnxruntime_worker" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_a_model_that_cannot_load_is_refused_and_no_worker_is_left(engines, tmp_path: Path) -> None:
    ort, _, _ = engines
    before = _worker_processes()
    good = Path(ort._workers["base"]._spec[0])
    with pytest.raises(OnnxRuntimeUnavailable, match=f"onnxruntime-genai could not load {tmp_path / 'missing'}: "):
        OnnxRuntimeEngine({"base": good, "task": tmp_path / "missing"}, ort.tokenizer, "base")
    assert _worker_processes() == before  # the base's worker, started first, was closed


def test_concurrent_requests_are_answered_in_turn(engines) -> None:
    ort, _, _ = engines
    alone = {(m, q): _ask(ort, m, q, 12).text for m in ("base", "task") for q in PROMPTS}
    jobs = [(m, q) for m in ("base", "task") for q in PROMPTS] * 2
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda job: _ask(ort, job[0], job[1], 12).text, jobs))
    assert together == [alone[j] for j in jobs]
    assert ort.busy("base") == ort.busy("task") == 0


def test_a_stop_string_ends_the_generation(engines) -> None:
    ort, _, _ = engines
    full = _ask(ort, "base", PROMPTS[0], 32)
    assert full.completion_tokens == 32 and len(full.text) > 6, "the tiny model should not end this early"
    stop = full.text[3:5]
    cut = _ask(ort, "base", PROMPTS[0], 32, stop=[stop])
    assert cut.text == full.text[:full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 32


def test_cancel_stops_the_request_and_the_worker_goes_on(engines) -> None:
    ort, _, _ = engines
    cancel = Cancellation()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.cancel()

    out = ort.generate(GenerationRequest(model="task", messages=[{"role": "user", "content": PROMPTS[1]}],
                                         max_tokens=1500, temperature=0.0), on_text=on_text, cancel=cancel)
    assert out.finish_reason == "cancelled" and out.completion_tokens < 200
    assert ort.busy("task") == 0 and _ask(ort, "task", PROMPTS[1]).completion_tokens > 0


def test_sampling_with_a_seed_repeats(engines) -> None:
    ort, _, _ = engines
    ask = lambda seed: ort.generate(GenerationRequest(  # noqa: E731
        model="base", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=16, temperature=1.0,
        top_p=0.9, seed=seed)).text
    assert ask(7) == ask(7)
    assert ask(9_881_047_590) == ask(9_881_047_590)  # any integer (the engine takes 32 bits; found by fuzzing)


def test_the_onnx_model_is_converted_once_per_adapter_version(lively) -> None:
    import os

    model_dir, run = lively
    cfg = _cfg(model_dir)
    adapter = read_adapters(run)[0]
    cache = run.engine_cache / "onnxruntime"
    first = served_onnx(cfg.model, adapter, cache, "fp32")
    written = (first / "genai_config.json").stat().st_mtime_ns
    again = served_onnx(cfg.model, adapter, cache, "fp32")
    assert again == first and (again / "genai_config.json").stat().st_mtime_ns == written
    weights = adapter.path / "adapter_model.safetensors"
    os.utime(weights, (time.time() + 10, time.time() + 10))  # a retrained adapter: new files
    newer = served_onnx(cfg.model, adapter, cache, "fp32")
    assert newer != first and (newer / "model.onnx").is_file() and not first.exists()
    assert not list(cache.glob("*.partial"))


def test_close_lets_the_running_request_finish_and_refuses_new_ones(lively) -> None:
    model_dir, run = lively
    engine, _ = open_local_engine(_cfg(model_dir, "serve.engine=onnxruntime"), [], "base", run.engine_cache,
                                  max_batch=2)
    started = threading.Event()
    result = {}

    def long_answer() -> None:
        result["out"] = engine.generate(
            GenerationRequest(model="base", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=400,
                              temperature=0.0), on_text=lambda piece: started.set())

    worker = threading.Thread(target=long_answer)
    worker.start()
    assert started.wait(30)
    engine.close()
    worker.join(60)
    assert result["out"].finish_reason in ("length", "stop") and result["out"].completion_tokens > 1
    with pytest.raises(RuntimeError, match="closed"):
        _ask(engine, "base", PROMPTS[0])


def test_split_sends_a_lone_request_to_onnxruntime_and_concurrent_ones_to_openvino(lively) -> None:
    model_dir, run = lively
    engine, choice = open_local_engine(_cfg(model_dir, "serve.engine=split", "serve.single_stream_quiet_ms=0"),
                                       read_adapters(run), "base", run.engine_cache, max_batch=8)
    try:
        assert isinstance(engine, SplitEngine) and choice["engine"] == "openvino+onnxruntime"
        assert choice["why"].startswith("serve.engine=split:") and engine.model_names() == ["base", "task"]
        lone = _ask(engine, "task", PROMPTS[0], 12)
        assert lone.engine == "onnxruntime"
        gate, release = threading.Event(), threading.Event()
        holder = {}

        def busy_caller(piece: str) -> None:  # its caller is still reading: the request counts as running
            gate.set()
            release.wait(60)

        def hold() -> None:  # one request keeps the engine busy while the others arrive
            holder["out"] = engine.generate(GenerationRequest(
                model="base", messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=64,
                temperature=0.0), on_text=busy_caller)

        t = threading.Thread(target=hold)
        t.start()
        assert gate.wait(30)
        with ThreadPoolExecutor(max_workers=6) as pool:
            busy = list(pool.map(lambda q: _ask(engine, "task", q, 12), PROMPTS * 2))
        release.set()
        t.join(60)
        assert holder["out"].engine == "onnxruntime" and {r.engine for r in busy} == {"openvino"}
        # Both engines serve the same merged models, here in float32: the same answers either way.
        assert [r.text for r in busy[:1]] == [lone.text]
        assert engine.answered_by == {"onnxruntime": 2, "openvino": 8}
    finally:
        engine.close()


def test_after_concurrent_load_requests_stay_on_openvino_for_the_quiet_time(lively) -> None:
    model_dir, run = lively
    engine, _ = open_local_engine(_cfg(model_dir, "serve.engine=split", "serve.single_stream_quiet_ms=400"),
                                  read_adapters(run), "base", run.engine_cache, max_batch=8)
    try:
        one_after_another = [_ask(engine, "task", q).engine for q in PROMPTS]
        assert one_after_another == ["onnxruntime"] * 4  # a sequential client never overlaps
        with ThreadPoolExecutor(max_workers=4) as pool:  # concurrent load
            list(pool.map(lambda q: _ask(engine, "task", q, 24), PROMPTS * 2))
        right_after = _ask(engine, "task", PROMPTS[1])
        time.sleep(0.5)
        after_a_pause = _ask(engine, "task", PROMPTS[2])
        assert (right_after.engine, after_a_pause.engine) == ("openvino", "onnxruntime")
    finally:
        engine.close()
