"""The client of any OpenAI-compatible chat endpoint (DeepSeek, Qwen, vLLM, Ollama, verticalize's own server).

``TeacherClient`` is shared by the data stage's teacher (the ``llm`` generator, augmentation: back-translation,
paraphrase) and the evaluate stage's LLM judge; both configure it from ``data.teacher``. It goes through the
real ``openai`` client and adds what a batch job needs around it:

- retries with exponential back-off on connection errors, timeouts, 429 and 5xx (honouring ``Retry-After``);
- a concurrency limit on requests in flight (a semaphore, so it holds across every caller thread);
- an on-disk SQLite cache keyed by a hash of (model, messages, params), so a rerun does not pay twice;
- usage totals (prompt/completion tokens, requests, cache hits, retries, failures, parse failures) for manifests.

The API key is read from the environment variable named by ``api_key_env`` and never logged or cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from verticalize.config import ConfigError, TeacherConfig
from verticalize.errors import UserError
from verticalize.json_reply import ReplyParseError, parse_json_reply

T = TypeVar("T")
R = TypeVar("R")

ENV_BASE_URL = "VERTICALIZE_TEACHER_BASE_URL"
ENV_MODEL = "VERTICALIZE_TEACHER_MODEL"
_MAX_BACKOFF_S = 30.0


class TeacherConfigError(ConfigError):
    """The teacher endpoint or model is not configured."""


class TeacherError(UserError, RuntimeError):
    """A request that still failed after every retry (or failed in a way retrying cannot fix)."""


@dataclass
class TeacherUsage:
    calls: int = 0              # chat() calls, cached or not
    requests: int = 0           # HTTP requests sent (retries included)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0           # calls that failed after all retries
    parse_failures: int = 0     # complete_json() replies without parseable JSON
    prompt_tokens: int = 0      # tokens paid for (cache hits cost nothing and are not added)
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ResponseCache:
    """Replies on disk in SQLite, keyed by a request hash; safe to share between threads."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # timeout: another process (a second build) may hold the write lock for a moment.
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL, "
                         "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                             (key, reply, prompt_tokens, completion_tokens, time.time()))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def default_cache_dir() -> Path:
    root = os.environ.get("VERTICALIZE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "verticalize") / "teacher"


def request_key(model: str, messages: list[dict], params: dict[str, Any]) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class TeacherClient:
    """Chat with an OpenAI-compatible endpoint: ``chat(messages) -> str``, ``complete_json(messages) -> obj``."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, concurrency: int = 4,
                 timeout_s: float = 60.0, max_retries: int = 3, temperature: float = 0.3,
                 cache_dir: Path | None = None, backoff_s: float = 0.5, max_tokens: int | None = 2048):
        from openai import OpenAI

        self.base_url, self.model = base_url, model
        self.concurrency, self.max_retries = concurrency, max_retries
        self.temperature, self.max_tokens, self.backoff_s = temperature, max_tokens, backoff_s
        # Local servers (Ollama, vLLM) accept any key; the client itself insists on one.
        self._client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s, max_retries=0)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self.usage = TeacherUsage()
        self.cache = ResponseCache(Path(cache_dir or default_cache_dir()) / "teacher_cache.sqlite")

    @classmethod
    def from_config(cls, cfg: TeacherConfig, *, cache_dir: Path | None = None, **kwargs: Any) -> "TeacherClient":
        """Build from ``data.teacher``; base URL and model fall back to the VERTICALIZE_TEACHER_* variables."""
        base_url = cfg.base_url or os.environ.get(ENV_BASE_URL)
        model = cfg.model or os.environ.get(ENV_MODEL)
        missing = [what for what, value in (("data.teacher.base_url", base_url), ("data.teacher.model", model))
                   if not value]
        if missing:
            raise TeacherConfigError(
                f"the llm teacher needs {' and '.join(missing)}: set them in the config (or --set key=value) or "
                f"through the environment variables {ENV_BASE_URL} / {ENV_MODEL}")
        return cls(base_url, model, api_key=os.environ.get(cfg.api_key_env), concurrency=cfg.concurrency,
                   timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, temperature=cfg.temperature,
                   max_tokens=cfg.max_tokens, cache_dir=cache_dir, **kwargs)

    def __repr__(self) -> str:  # no key in here, ever
        return f"TeacherClient(base_url={self.base_url!r}, model={self.model!r})"

    # ------------------------------------------------------------------------------------------------ calls
    def chat(self, messages: list[dict], *, temperature: float | None = None, max_tokens: int | None = None,
             use_cache: bool = True) -> str:
        """The assistant's reply text. Raises TeacherError when every retry failed."""
        params = {"temperature": self.temperature if temperature is None else temperature,
                  "max_tokens": max_tokens or self.max_tokens}
        key = request_key(self.model, messages, params)
        self._count(calls=1)
        if use_cache:
            cached = self.cache.get(key)
            if cached is not None:
                self._count(cache_hits=1)
                return cached
        reply, prompt_tokens, completion_tokens = self._request_with_retries(messages, params)
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        self.cache.put(key, reply, prompt_tokens, completion_tokens)
        return reply

    def complete_json(self, messages: list[dict], **kwargs: Any) -> Any:
        """The first JSON object/array in the reply. Raises ReplyParseError (counted) or TeacherError."""
        reply = self.chat(messages, **kwargs)
        try:
            return parse_json_reply(reply)
        except ReplyParseError:
            self._count(parse_failures=1)
            raise

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` over ``items`` on ``concurrency`` threads; results in input order."""
        return list(self.imap(fn, items))

    def imap(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Like ``map`` but yields each result (in input order) as soon as it and those before it are done."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            yield from pool.map(fn, items)

    def close(self) -> None:
        self.cache.close()
        self._client.close()

    # ------------------------------------------------------------------------------------------------ internals
    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.usage, name, getattr(self.usage, name) + delta)

    def _request_with_retries(self, messages: list[dict], params: dict[str, Any]) -> tuple[str, int, int]:
        import openai

        attempt = 0
        while True:
            try:
                with self._slots:
                    self._count(requests=1)
                    response = self._client.chat.completions.create(
                        model=self.model, messages=messages,
                        **{k: v for k, v in params.items() if v is not None})
                return self._reply_of(response)
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as e:
                if attempt >= self.max_retries:
                    self._count(failures=1)
                    raise TeacherError(f"teacher {self.base_url} failed after {attempt + 1} attempt(s): "
                                       f"{type(e).__name__}: {_short(e)}") from e
                time.sleep(self._backoff(attempt, e))
                attempt += 1
                self._count(retries=1)
            except openai.APIError as e:  # 4xx other than 429: a bad request or key, retrying will not help
                self._count(failures=1)
                raise TeacherError(f"teacher {self.base_url} refused the request: {type(e).__name__}: "
                                   f"{_short(e)}") from e

    def _backoff(self, attempt: int, error: Exception) -> float:
        delay = self.backoff_s * (2 ** attempt)
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return min(delay, _MAX_BACKOFF_S)

    @staticmethod
    def _reply_of(response: Any) -> tuple[str, int, int]:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise TeacherError("teacher reply has no choices")
        message = choices[0].message
        text = message.content or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return text, prompt_tokens, completion_tokens


def _short(error: Exception) -> str:
    return str(error).replace("\n", " ")[:200]
