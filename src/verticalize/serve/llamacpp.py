"""The llama.cpp engine (serve.engine=llamacpp): CPU/edge serving of exported GGUFs through llama-cpp-python.

Each served name is one GGUF with its adapter merged in (`verticalize export RUN --to gguf`, one per adapter; the
base is served from the GGUF it was converted from, or an exported `--adapter base`). llama.cpp contexts are not
thread-safe, so each model has a lock; different models generate in parallel. Prompts are rendered with the chat
template stored in the GGUF, and llama.cpp keeps the longest common prompt prefix in its KV cache between calls.
"""

from __future__ import annotations

import codecs
import threading
from pathlib import Path
from typing import Any, Callable

from verticalize.engine_api import Cancellation, GenerationRequest, GenerationResult, StopOnText, TokenClock
from verticalize.errors import UserError
from verticalize.export.gguf import GGUF_NAME


class LlamaCppUnavailable(UserError, FileNotFoundError):
    """llama-cpp-python or the GGUF files are missing; the message says how to provide them."""


def discover_ggufs(gguf_dir: Path) -> dict[str, Path]:
    """Served name → GGUF, for every ``<gguf_dir>/<name>/model.gguf`` written by `export --to gguf`."""
    if not gguf_dir.is_dir():
        return {}
    return {d.name: d / GGUF_NAME for d in sorted(gguf_dir.iterdir()) if (d / GGUF_NAME).is_file()}


def _import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise LlamaCppUnavailable("serve.engine=llamacpp needs llama-cpp-python: pip install "
                                  "'verticalize[llamacpp]'") from e
    return Llama


class _LoadedModel:
    def __init__(self, path: Path, n_ctx: int, n_threads: int | None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = _import_llama()(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                   n_threads_batch=n_threads, verbose=False)
        self.lock = threading.Lock()
        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        self.bos = self._token_text(self.llm.token_bos())
        self.eos = self._token_text(self.llm.token_eos())
        self.formatter = Jinja2ChatFormatter(template, eos_token=self.eos, bos_token=self.bos) if template else None
        self.add_bos = str(meta.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
        import llama_cpp

        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def _token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def prompt_ids(self, req: GenerationRequest) -> list[int]:
        if req.messages is not None:
            if self.formatter is None:
                raise ValueError("this GGUF has no chat template; use /v1/completions")
            text = self.formatter(messages=req.messages).prompt
            # The template writes the BOS text itself where the model wants one.
            return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize((req.prompt or "").encode("utf-8"), add_bos=self.add_bos, special=False)

    def is_end(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))


class LlamaCppEngine:
    """Engine over llama-cpp-python: one `Llama` per served GGUF."""

    def __init__(self, models: dict[str, Path], base_name: str, n_ctx: int = 4096, n_threads: int | None = None):
        if not models:
            raise LlamaCppUnavailable("no GGUF to serve: run `verticalize export RUN --to gguf` first (one per "
                                      "adapter; `--adapter base` for the bare base)")
        self.base_name = base_name
        self._models = {name: _LoadedModel(path, n_ctx, n_threads) for name, path in models.items()}

    @classmethod
    def from_run(cls, serve_cfg: Any, gguf_dir: Path, base_name: str, base_gguf: Path | None) -> "LlamaCppEngine":
        models = discover_ggufs(gguf_dir)
        if base_name not in models and base_gguf is not None:
            models = {base_name: base_gguf, **models}
        if not models:
            raise LlamaCppUnavailable(f"no GGUF under {gguf_dir}: run `verticalize export RUN --to gguf` first "
                                      "(one per adapter; `--adapter base` for the bare base)")
        _import_llama()
        return cls(models, base_name, n_ctx=serve_cfg.llamacpp_n_ctx, n_threads=serve_cfg.llamacpp_threads or None)

    def model_names(self) -> list[str]:
        names = list(self._models)
        return ([self.base_name] if self.base_name in names else []) + [n for n in names if n != self.base_name]

    def _model(self, name: str) -> _LoadedModel:
        if name not in self._models:
            raise KeyError(f"model '{name}' is not served by this llama.cpp engine")
        return self._models[name]

    def count_prompt_tokens(self, req: GenerationRequest) -> int:
        return len(self._model(req.model).prompt_ids(req))

    def generate(self, req: GenerationRequest, on_text: Callable[[str], None] | None = None,
                 cancel: Cancellation | None = None) -> GenerationResult:
        """Token by token from llama.cpp's token generator; leaving the loop ends the generation there: at end of
        sequence, a stop string, max_tokens or ``cancel``. (llama-cpp-python's ``stop=`` belongs to
        ``create_completion``, which matches text over this same generator; here `StopOnText` does it, so every
        engine cuts at a stop string the same way.)"""
        model = self._model(req.model)
        ids = model.prompt_ids(req)
        cutter = StopOnText(req.stop or [], on_text)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span tokens
        greedy = req.temperature <= 0
        n_new, ended, cancelled = 0, False, False
        clock = TokenClock()
        with model.lock:
            llm = model.llm
            if req.seed is not None:
                llm.set_seed(req.seed)
            tokens = llm.generate(ids, temp=0.0 if greedy else req.temperature, top_k=1 if greedy else 0,
                                  top_p=1.0 if greedy else req.top_p, min_p=0.0, repeat_penalty=1.0, reset=True)
            for token in tokens:
                if cancel is not None and cancel.cancelled:
                    cancelled = True
                    break
                if model.is_end(token):
                    ended = True
                    break
                n_new += 1
                clock.tick()
                cutter.feed(decoder.decode(llm.detokenize([token])))
                if cutter.stopped or n_new >= req.max_tokens:
                    break
        cutter.feed(decoder.decode(b"", final=True))
        cutter.finish()
        finish = "cancelled" if cancelled else "stop" if ended or cutter.stopped else "length"
        return GenerationResult(cutter.text, len(ids), n_new, finish, clock.first, clock.gaps)
