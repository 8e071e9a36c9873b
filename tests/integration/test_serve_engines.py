"""The llama.cpp and vLLM engines behind the gateway.

vLLM itself needs a GPU; its stand-in is a real OpenAI-compatible server on loopback: our own gateway process
(embedded engine). The front gateway (serve.engine=vllm) forwards to it with the real `openai` client.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import openai
import pytest

from conftest import ServerProcess, free_port, make_lora_adapter
from verticalize.artifacts import RunDir
from verticalize.engine import GenerationRequest

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(not HAVE_LLAMA_CPP, reason="llama-cpp-python is an optional extra "
                                     "(pip install 'verticalize[llamacpp]'); the llamacpp engine needs it")
QUESTION = [{"role": "user", "content": "What is the annual fee?"}]


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("engines-run")
    make_lora_adapter(tiny_model_dir, run / "train" / "adapters" / "task", 11)
    make_lora_adapter(tiny_model_dir, run / "train" / "adapters" / "domain", 12)
    (run / "config.yaml").write_text(f"model:\n  base: {tiny_model_dir}\n  dtype: float32\n"
                                     "serve:\n  max_output_tokens: 64\n  gguf_type: f32\n", encoding="utf-8")
    return run


# ----------------------------------------------------------------------------------------------- vLLM
@pytest.fixture(scope="module")
def upstream(adapter_run: Path):
    server = ServerProcess(adapter_run)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, upstream: ServerProcess):
    run = tmp_path_factory.mktemp("front-run")  # no adapters here: the vLLM side serves them
    server = ServerProcess(run, f"model.base={tiny_model_dir}", "serve.engine=vllm",
                           f"serve.vllm_base_url={upstream.url}/v1")
    yield server
    server.stop()


def test_vllm_engine_lists_the_upstream_models(front: ServerProcess, upstream: ServerProcess):
    assert [m.id for m in front.client().models.list().data] == \
        [m.id for m in upstream.client().models.list().data]


def test_vllm_engine_forwards_chat_and_stream(front: ServerProcess, upstream: ServerProcess):
    messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
    direct = upstream.client().chat.completions.create(model="task", messages=messages, max_tokens=12,
                                                       temperature=0)
    forwarded = front.client().chat.completions.create(model="task", messages=messages, max_tokens=12,
                                                       temperature=0)
    assert forwarded.choices[0].message.content == direct.choices[0].message.content
    assert forwarded.usage.completion_tokens == direct.usage.completion_tokens
    assert forwarded.usage.prompt_tokens == direct.usage.prompt_tokens
    stream = front.client().chat.completions.create(model="task", messages=messages, max_tokens=12,
                                                    temperature=0, stream=True)
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == direct.choices[0].message.content
    assert usage.completion_tokens == direct.usage.completion_tokens


def test_vllm_engine_unknown_adapter_is_404(front: ServerProcess):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        front.client().chat.completions.create(model="nope", messages=QUESTION, max_tokens=2)


def test_vllm_engine_says_how_to_start_vllm():
    from verticalize.serve.vllm import VLLMEngine, VLLMUnavailable

    with pytest.raises(VLLMUnavailable, match="launch_vllm.sh"):
        VLLMEngine(f"http://127.0.0.1:{free_port()}/v1", "base", timeout_s=2)


# ----------------------------------------------------------------------------------------------- llama.cpp
@pytest.fixture(scope="module")
def gguf_run(adapter_run: Path) -> Path:
    from verticalize.config import load_config
    from verticalize.export import export_run

    cfg = load_config(adapter_run / "config.yaml", [f"project.run_dir={adapter_run}"])
    if not (adapter_run / "export" / "gguf" / "task" / "model.gguf").is_file():
        export_run(cfg, RunDir(adapter_run), "gguf", adapter="task")
        export_run(cfg, RunDir(adapter_run), "gguf", adapter="base")
    return adapter_run


@needs_llama_cpp
def test_llamacpp_engine_matches_the_embedded_engine(gguf_run: Path, tiny_model_dir: Path):
    from verticalize.config import load_config
    from verticalize.serve import build_engine

    cfg = load_config(gguf_run / "config.yaml", [f"project.run_dir={gguf_run}"])
    embedded = build_engine(cfg, RunDir(gguf_run))
    cfg.serve.engine = "llamacpp"
    llama = build_engine(cfg, RunDir(gguf_run))
    assert llama.model_names() == [tiny_model_dir.name, "task"]
    for model in ("task", tiny_model_dir.name):
        req = GenerationRequest(model=model, messages=QUESTION, max_tokens=10, temperature=0)
        want, got = embedded.generate(req), llama.generate(req)
        assert got.prompt_tokens == want.prompt_tokens
        assert got.text == want.text and got.completion_tokens == want.completion_tokens
    # Streaming pieces add up to the text; a stop string cuts it.
    pieces: list[str] = []
    req = GenerationRequest(model="task", messages=QUESTION, max_tokens=10, temperature=0)
    full = llama.generate(req, pieces.append)
    assert "".join(pieces) == full.text and full.time_to_first_token is not None
    if len(full.text) > 3:
        stop = full.text[2:4]
        cut = llama.generate(GenerationRequest(model="task", messages=QUESTION, max_tokens=10, temperature=0,
                                               stop=[stop]))
        assert cut.text == full.text[:full.text.index(stop)] and cut.finish_reason == "stop"
    # Sampling with a seed is reproducible.
    a = llama.generate(GenerationRequest(model="task", messages=QUESTION, max_tokens=8, temperature=1.0, seed=7))
    b = llama.generate(GenerationRequest(model="task", messages=QUESTION, max_tokens=8, temperature=1.0, seed=7))
    assert a.text == b.text


@needs_llama_cpp
def test_gateway_serves_llamacpp_over_http(gguf_run: Path):
    server = ServerProcess(gguf_run, "serve.engine=llamacpp")
    try:
        client = server.client()
        r = client.chat.completions.create(model="task", messages=QUESTION, max_tokens=6, temperature=0)
        assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 5
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="task", messages=QUESTION, max_tokens=6, temperature=0, stream=True) if c.choices)
        assert text == r.choices[0].message.content
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'verticalize:requests_total{adapter="task",rung="peft",status="200"} 2.0' in metrics
    finally:
        server.stop()


def test_llamacpp_engine_without_ggufs_says_what_to_export(tmp_path: Path, tiny_model_dir: Path):
    from verticalize.config import load_config
    from verticalize.serve import build_engine
    from verticalize.serve.llamacpp import LlamaCppUnavailable

    cfg = load_config(None, [f"model.base={tiny_model_dir}", "serve.engine=llamacpp"])
    with pytest.raises(LlamaCppUnavailable, match="export RUN --to gguf"):
        build_engine(cfg, RunDir(tmp_path))
