"""The vLLM engine (serve.engine=vllm): the gateway forwards generation to a vLLM server over its OpenAI API.

vLLM runs as its own process (`verticalize export RUN --to vllm` writes the launch script with
`--enable-lora --lora-modules name=path ...`), and serves each adapter under its name, the base under
`--served-model-name`. The gateway keeps its own layer (auth, limits, RAG, metrics, feedback) and uses the real
`openai` client to stream from vLLM. Prompt tokens are counted with the base's tokenizer locally, so limits are
checked before a request leaves the gateway.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from verticalize.engine_api import Cancellation, GenerationRequest, GenerationResult, TokenClock
from verticalize.errors import UserError
from verticalize.models import load_tokenizer, resolve_base


class VLLMUnavailable(UserError, FileNotFoundError):
    """The vLLM server cannot be reached; the message says how to start it."""


class VLLMEngine:
    def __init__(self, base_url: str, base_name: str, tokenizer: Any = None, api_key: str | None = None,
                 timeout_s: float = 120.0):
        import openai

        self.base_url = base_url
        self.base_name = base_name
        self.tokenizer = tokenizer
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=1)
        self._names = self._list_models()

    @classmethod
    def from_config(cls, cfg: Any, base_name: str) -> "VLLMEngine":
        tokenizer = load_tokenizer(resolve_base(cfg.model), cfg.model)
        return cls(cfg.serve.vllm_base_url, base_name, tokenizer, os.environ.get(cfg.serve.vllm_api_key_env),
                   cfg.serve.request_timeout_s)

    def _list_models(self) -> list[str]:
        import openai

        try:
            return [m.id for m in self.client.models.list().data]
        except openai.APIConnectionError as e:
            raise VLLMUnavailable(f"no vLLM server answers at {self.base_url} (serve.vllm_base_url): start it with "
                                  "RUN/export/vllm/launch_vllm.sh (`verticalize export RUN --to vllm`)") from e

    def model_names(self) -> list[str]:
        return list(self._names)

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        if self.tokenizer is None:  # no local tokenizer: a rough bound that still catches huge prompts
            return sum(len(m["content"]) for m in req.messages or []) // 4 + len(req.prompt or "") // 4
        if req.messages is not None:
            return len(self.tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=True,
                                                          return_dict=False))
        return len(self.tokenizer(req.prompt or "")["input_ids"])

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Streamed from vLLM. Stop strings go to vLLM (``stop``: its SamplingParams end generation there, and it
        returns the text before them); ``cancel`` is checked at every chunk and closes the stream there, and vLLM
        aborts a request whose client is gone."""
        common: dict[str, Any] = dict(model=req.model, max_tokens=req.max_tokens, temperature=req.temperature,
                                      top_p=req.top_p, stream=True, stream_options={"include_usage": True})
        if req.stop:
            common["stop"] = req.stop
        if req.seed is not None:
            common["seed"] = req.seed
        if req.messages is not None:
            stream = self.client.chat.completions.create(messages=req.messages, **common)
        else:
            stream = self.client.completions.create(prompt=req.prompt or "", **common)
        parts: list[str] = []
        finish, usage = "stop", None
        clock = TokenClock()
        for chunk in self._chunks(stream, cancel):
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                piece = choice.delta.content if hasattr(choice, "delta") else choice.text
                if piece:
                    clock.tick()
                    parts.append(piece)
                    if on_text:
                        on_text(piece)
                if choice.finish_reason:
                    finish = choice.finish_reason
        text = "".join(parts)
        if cancel is not None and cancel.cancelled:
            finish = "cancelled"
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:
            prompt_tokens = self.count_prompt_tokens(req)
            completion_tokens = len(self.tokenizer(text)["input_ids"]) if self.tokenizer else len(parts)
        return GenerationResult(text, prompt_tokens, completion_tokens, finish, clock.first, clock.gaps)

    @staticmethod
    def _chunks(stream: Any, cancel: Cancellation | None) -> Any:
        """The stream's chunks until it ends or is cancelled; closing it tells vLLM to abort the request."""
        try:
            for chunk in stream:
                if cancel is not None and cancel.cancelled:
                    break
                yield chunk
        finally:
            stream.close()
