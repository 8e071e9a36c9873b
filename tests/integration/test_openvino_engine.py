"""The OpenVINO engine on a tiny model: the same greedy answers as Transformers + PEFT (f16 GGUF, f32 inference),
continuous batching of concurrent requests for different adapters, stop strings and cancellation that end the
generation, the GGUF cache, and the fallback to the embedded engine where OpenVINO cannot serve a run."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import make_lora_adapter
from verticalize.artifacts import RunDir, read_adapters, write_json
from verticalize.config import load_config
from verticalize.engine import choose_local_engine, open_local_engine
from verticalize.engine_api import Cancellation, GenerationRequest
from verticalize.models.tiny import build_tiny_model
from verticalize.openvino_engine import OpenVINOEngine, OpenVINOUnavailable, served_gguf

PROMPTS = ["What is the annual fee of the card?", "Who may apply for a loan?", "逾期多少天停止计息？",
           "How do you restart the service?"]


@pytest.fixture(scope="module")
def lively(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunDir]:
    root = tmp_path_factory.mktemp("openvino")
    model_dir = build_tiny_model(root / "model", weight_std=0.3)
    run = RunDir(root / "run")
    make_lora_adapter(model_dir, run.adapters_dir / "task", seed=3)
    return model_dir, run


def _cfg(model_dir: Path, *extra: str):
    # f16 weights and f32 inference: OpenVINO then computes what Transformers computes in float32. OpenVINO alone
    # (auto adds ONNX Runtime for lone requests: tests/integration/test_onnxruntime_engine.py).
    return load_config(None, [f"model.base={model_dir}", "model.dtype=float32", "serve.openvino_weights=f16",
                              "serve.openvino_precision=f32", "serve.engine=openvino", *extra])


@pytest.fixture(scope="module")
def engines(lively):
    model_dir, run = lively
    adapters = read_adapters(run)
    ov, choice = open_local_engine(_cfg(model_dir), adapters, "base", run.engine_cache, max_batch=4)
    embedded, _ = open_local_engine(_cfg(model_dir, "serve.engine=embedded"), adapters, "base", run.engine_cache,
                                    max_batch=4)
    yield ov, embedded, choice
    ov.close()
    embedded.close()


def _ask(engine, model: str, question: str, max_tokens: int = 8, **kw):
    return engine.generate(GenerationRequest(model=model, messages=[{"role": "user", "content": question}],
                                             max_tokens=max_tokens, temperature=0.0, **kw))


def test_openvino_answers_as_transformers_does(engines) -> None:
    ov, embedded, choice = engines
    assert isinstance(ov, OpenVINOEngine) and choice == {"engine": "openvino", "why": "serve.engine=openvino"}
    assert ov.model_names() == ["base", "task"]
    answers = {}
    for model in ("base", "task"):
        for q in PROMPTS:
            got, want = _ask(ov, model, q), _ask(embedded, model, q)
            assert (got.text, got.completion_tokens, got.finish_reason) == \
                (want.text, want.completion_tokens, want.finish_reason), (model, q)
            assert got.prompt_tokens == want.prompt_tokens and got.completion_tokens > 0
            answers[model, q] = got.text
    # the adapter is merged into its GGUF: it changes the answers
    assert any(answers["base", q] != answers["task", q] for q in PROMPTS)


def test_concurrent_requests_for_two_models_get_their_own_answers(engines) -> None:
    ov, _, _ = engines
    alone = {(m, q): _ask(ov, m, q, 12).text for m in ("base", "task") for q in PROMPTS}
    jobs = [(m, q) for m in ("base", "task") for q in PROMPTS] * 2  # 16 requests, 8 per pipeline
    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(lambda job: _ask(ov, job[0], job[1], 12).text, jobs))
    assert together == [alone[j] for j in jobs]


def test_a_stop_string_ends_the_generation(engines) -> None:
    ov, _, _ = engines
    full = _ask(ov, "base", PROMPTS[0], 32)
    assert full.completion_tokens == 32 and len(full.text) > 6, "the tiny model should not end this early"
    stop = full.text[3:5]
    cut = _ask(ov, "base", PROMPTS[0], 32, stop=[stop])
    assert cut.text == full.text[:full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 32


def test_cancel_stops_the_request_and_frees_the_pipeline(engines) -> None:
    ov, _, _ = engines
    cancel = Cancellation()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.cancel()

    t0 = time.perf_counter()
    out = ov.generate(GenerationRequest(model="task", messages=[{"role": "user", "content": PROMPTS[1]}],
                                        max_tokens=1500, temperature=0.0), on_text=on_text, cancel=cancel)
    assert out.finish_reason == "cancelled" and out.completion_tokens < 200
    assert time.perf_counter() - t0 < 30
    assert ov._pipelines["task"]._live == {}  # nothing left running on the pipeline
    assert _ask(ov, "task", PROMPTS[1]).completion_tokens > 0  # and it still serves


def test_the_gguf_is_written_once_per_adapter_version(lively) -> None:
    model_dir, run = lively
    cfg = _cfg(model_dir)
    adapter = read_adapters(run)[0]
    first = served_gguf(cfg.model, adapter, run.engine_cache / "openvino", "f16")
    written = first.stat().st_mtime_ns
    again = served_gguf(cfg.model, adapter, run.engine_cache / "openvino", "f16")
    assert again == first and again.stat().st_mtime_ns == written
    weights = adapter.path / "adapter_model.safetensors"
    os.utime(weights, (time.time() + 10, time.time() + 10))  # a retrained adapter: new files
    newer = served_gguf(cfg.model, adapter, run.engine_cache / "openvino", "f16")
    assert newer != first and newer.is_file() and not first.exists()  # the stale version is gone
    assert not list((run.engine_cache / "openvino").glob("*.partial"))


def test_q8_0_default_weights_load_and_answer(lively) -> None:
    model_dir, run = lively
    cfg = load_config(None, [f"model.base={model_dir}", "serve.engine=openvino"])
    engine, choice = open_local_engine(cfg, read_adapters(run), "base", run.engine_cache, max_batch=2)
    try:
        assert choice["engine"] == "openvino" and engine.base_form.loaded == "q8_0 gguf, adapters merged"
        assert _ask(engine, "task", PROMPTS[0]).completion_tokens > 0
    finally:
        engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        _ask(engine, "task", PROMPTS[0])


def test_a_prefix_adapter_falls_back_to_the_embedded_engine(tmp_path: Path, lively) -> None:
    import torch
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir, lora_run = lively
    name, why = choose_local_engine(_cfg(model_dir, "serve.engine=auto"), read_adapters(lora_run))
    assert name == "openvino" and why.startswith("auto:")  # LoRA: OpenVINO alone (the split only on request)
    run = RunDir(tmp_path / "run")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    model.save_pretrained(run.adapters_dir / "soft")
    write_json(run.adapters_dir / "soft" / "verticalize_adapter.json", {"name": "soft", "method": "prefix"})
    adapters = read_adapters(run)
    name, why = choose_local_engine(_cfg(model_dir, "serve.engine=auto"), adapters)
    assert name == "embedded" and "adapter soft is PREFIX_TUNING" in why
    with pytest.raises(OpenVINOUnavailable, match="cannot serve this run: adapter soft is PREFIX_TUNING"):
        choose_local_engine(_cfg(model_dir, "serve.engine=openvino"), adapters)


def test_close_lets_running_requests_finish_and_refuses_new_ones(lively) -> None:
    model_dir, run = lively
    engine, _ = open_local_engine(_cfg(model_dir), [], "base", run.engine_cache, max_batch=2)
    started = threading.Event()
    result = {}

    def long_answer() -> None:
        result["out"] = engine.generate(
            GenerationRequest(model="base", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=1200,
                              temperature=0.0), on_text=lambda piece: started.set())

    worker = threading.Thread(target=long_answer)
    worker.start()
    assert started.wait(30)
    pipelines = list(engine._pipelines.values())
    engine.close()  # what a reload does to the old engine once it has switched
    worker.join(60)
    assert result["out"].finish_reason in ("length", "stop") and result["out"].completion_tokens > 1
    assert not any(p._thread.is_alive() for p in pipelines)
    assert all(p._process.poll() == 0 for p in pipelines)  # each worker process ended cleanly
    with pytest.raises(RuntimeError, match="closed"):
        _ask(engine, "base", PROMPTS[0])


def test_a_request_the_pipeline_refuses_fails_alone(engines) -> None:
    ov, _, _ = engines
    with pytest.raises(RuntimeError, match="(?s)the OpenVINO engine failed on this request: .*Prompt length cannot be 0"):
        ov.generate(GenerationRequest(model="base", prompt="", max_tokens=4, temperature=0.0))
    assert _ask(ov, "base", PROMPTS[0]).completion_tokens > 0  # the worker is still up
