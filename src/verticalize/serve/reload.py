"""Switching a running gateway to another version of its run (`POST /admin/reload`), without a restart.

`verticalize run --iterate` writes the next version of a run beside it (``RUN.v2``, ``RUN.v3``, ...;
`artifacts.run_family`) and never touches the served one, so a gateway can move to it while it serves:

1. the new version is loaded **beside** the old one (engine and adapters, knowledge base, feedback store, quality
   signals, the prompt style and RAG profile of its config) — the old one keeps answering meanwhile, and a
   failed load leaves it in place;
2. the switch is one step on the event loop: the engine the routes call (`SwitchableEngine`) starts handing new
   generations to the new engine, and the knowledge base, feedback store and prompt settings are replaced with it;
3. generations already running on the old engine finish there; once none is left the old engine is closed (when
   it has a ``close()``) and dropped.

Only a version of the family the gateway was started on can be loaded (a path in the same directory named
``NAME`` or ``NAME.vN``): the route is behind the API key, but a key holder still cannot make the server load
arbitrary files. The limits (concurrency, queue, timeouts, keys) stay those the server was started with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from verticalize.artifacts import RunDir, run_versions
from verticalize.errors import UserError
from verticalize.serve.feedback import FeedbackStore
from verticalize.serve.quality import QualitySignals
from verticalize.serve.service import APIError

log = logging.getLogger("verticalize.serve")


@dataclass
class Served:
    """What one run version serves: everything a reload replaces."""

    run: RunDir
    engine: Any
    kb: Any = None
    feedback: FeedbackStore | None = None
    quality: QualitySignals | None = None
    style: Any = None
    rag_adapters: set[str] = field(default_factory=set)
    top_k: int | None = None


class _Slot:
    """One engine and its generations in flight."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.in_flight = 0
        self.idle = threading.Event()
        self.idle.set()


class SwitchableEngine:
    """The engine the gateway calls: it forwards to the current engine, and `switch` replaces that atomically.

    A generation holds the engine it started on until it returns, so a switch never interrupts one; the old
    engine's `_Slot` tells when its last generation has finished."""

    def __init__(self, engine: Any):
        self._lock = threading.Lock()
        self._slot = _Slot(engine)

    @property
    def current(self) -> Any:
        return self._slot.engine

    @property
    def base_name(self) -> str:
        return self._slot.engine.base_name

    def model_names(self) -> list[str]:
        return self._slot.engine.model_names()

    def count_prompt_tokens(self, req: Any) -> int:
        return self._slot.engine.count_prompt_tokens(req)

    def generate(self, req: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            slot = self._slot
            slot.in_flight += 1
            slot.idle.clear()
        try:
            if req.model not in slot.engine.model_names():  # checked before a reload, gone after it
                raise APIError(404, f"The model '{req.model}' is no longer served (the gateway was switched to "
                               f"another run version). Available: {', '.join(slot.engine.model_names())}",
                               "invalid_request_error", "model_not_found", "model")
            return slot.engine.generate(req, *args, **kwargs)
        finally:
            with self._lock:
                slot.in_flight -= 1
                if slot.in_flight == 0:
                    slot.idle.set()

    def switch(self, engine: Any) -> _Slot:
        """Send every later generation to ``engine``; returns the old engine's slot (wait on its ``idle``)."""
        with self._lock:
            old, self._slot = self._slot, _Slot(engine)
        return old

    def __getattr__(self, name: str) -> Any:  # anything else an engine offers (scheduler statistics, ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._slot.engine, name)


def _unfinished(run: RunDir) -> bool:
    """An iteration `run --iterate` is still writing (or was interrupted): not to be served."""
    path = run.manifest("iteration")
    if not path.is_file():
        return False
    try:
        return not json.loads(path.read_text(encoding="utf-8")).get("complete")
    except ValueError:
        return True


class Reloader:
    """Loads a version of the served run's family (``load``) and switches a gateway to it."""

    def __init__(self, run: RunDir | Path | str, load: Callable[[RunDir], Served], *, drain_timeout_s: float = 600):
        self.run = RunDir(Path(run if not isinstance(run, RunDir) else run.root).resolve())
        self.load = load
        self.drain_timeout_s = drain_timeout_s
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()

    def resolve(self, run: str | None) -> RunDir:
        """The version to load: ``run`` (it must be a version of the served run's family), or the newest one."""
        versions = [p.resolve() for _, p in run_versions(self.run.root)]
        if run is None:
            usable = [p for p in versions if not _unfinished(RunDir(p))
                      and (RunDir(p).config_file.is_file() or RunDir(p).adapters_dir.is_dir())]
            if not usable:
                raise APIError(400, "no run version to load", "invalid_request_error", "run_not_found", "run")
            return RunDir(usable[-1])
        path = Path(run).expanduser().resolve()
        if path not in versions:
            names = ", ".join(p.name for p in versions)
            raise APIError(400, f"'{run}' is not a version of the served run (this gateway loads only {names} in "
                           f"{self.run.root.parent})", "invalid_request_error", "invalid_run", "run")
        if _unfinished(RunDir(path)):
            raise APIError(400, f"{path} is still being trained (`verticalize run --iterate` has not finished it)",
                           "invalid_request_error", "run_incomplete", "run")
        return RunDir(path)

    async def reload(self, gateway: Any, run: str | None) -> dict[str, Any]:
        if self._lock.locked():
            raise APIError(409, "a reload is already in progress", "invalid_request_error", "reload_in_progress")
        async with self._lock:
            target = self.resolve(run)
            try:
                served = await asyncio.to_thread(self.load, target)  # beside the old one, which keeps serving
            except (UserError, FileNotFoundError, ValueError) as e:
                raise APIError(400, f"could not load {target.root}: {e}", "invalid_request_error",
                               "reload_failed", "run") from None
            except Exception as e:
                log.exception("reload of %s failed", target.root)
                raise APIError(500, f"could not load {target.root}: {type(e).__name__}: {e}", "server_error",
                               "reload_failed") from None
            previous = self.run
            old = self.switch(gateway, served)
            self.run = target
            task = asyncio.create_task(self._retire(old, previous))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        log.info("switched from %s to %s (%d generation(s) finishing on the old engine)", previous.root,
                 target.root, old.in_flight)
        return {"object": "reload", "run": str(target.root), "previous_run": str(previous.root),
                "models": gateway.engine.model_names(), "finishing_on_previous": old.in_flight}

    @staticmethod
    def switch(gateway: Any, served: Served) -> _Slot:
        """Everything in one step on the event loop (no await in between)."""
        if not isinstance(gateway.engine, SwitchableEngine):
            gateway.engine = SwitchableEngine(gateway.engine)
        if served.feedback is not None and gateway.feedback is not None:
            # Feedback on an answer the previous version gave still finds its response.
            served.feedback.previous = [gateway.feedback, *gateway.feedback.previous]
        old = gateway.engine.switch(served.engine)
        gateway.kb = served.kb
        gateway.feedback = served.feedback if served.feedback is not None else gateway.feedback
        if served.quality is not None:
            gateway.quality = served.quality
        if served.style is not None:
            gateway.settings.style = served.style
        gateway.settings.rag_adapters = set(served.rag_adapters)
        if served.top_k is not None:
            gateway.settings.top_k = served.top_k
        return old

    async def _retire(self, old: _Slot, run: RunDir) -> None:
        if not await asyncio.to_thread(old.idle.wait, self.drain_timeout_s):
            log.warning("%d generation(s) still running on %s after %.0fs; it is left to them, not closed",
                        old.in_flight, run.root, self.drain_timeout_s)
            return
        close = getattr(old.engine, "close", None)
        if callable(close):
            await asyncio.to_thread(close)
        old.engine = None
