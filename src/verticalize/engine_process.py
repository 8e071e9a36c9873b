"""A served model in a worker process of its own, and `EngineProcess`, the proxy in the gateway's process that
sends it requests and hands each request the tokens that come back (the OpenVINO and ONNX Runtime engines).

Why a process: both libraries' Python bindings hold the GIL while they compute (OpenVINO GenAI's `step()`,
onnxruntime-genai's `generate_next_token()`), so in the gateway's process every other Python thread — the event
loop, tokenisation, the other requests' streams — waited for each forward pass, and each pass waited for them. With
the model in its own process the two run side by side: 3-token answers through the gateway at concurrency 8 went
from p50 329 / p99 615 ms to 188 / 311 ms on 2 cores (the split engine both times; OpenVINO alone, the default
since: 241 / 283 ms — bench/results/serve.json). vLLM runs its engine core apart from its API server for the same
reason.

Messages over one pipe (`multiprocessing.connection`, pickled tuples):
  proxy -> worker  the worker's spec first, then ("add", rid, token_ids, options) · ("stop", rid) · ("close",)
  worker -> proxy  ("ready",) or ("failed", None, why) once loaded, then ("out", [(rid, new_ids, finish, done),
                   ...]) and ("failed", rid, message)
``finish`` is "stop" when the model ended the request (end of sequence), else None; ``done``: the worker is finished
with it. After ("close",) the requests already added run to their end, then the worker exits; it also exits when
the proxy's end of the pipe closes (the gateway died). A worker module has a `serve(conn, *spec)` and runs
`worker_main(serve)` as its ``__main__``; it imports only its own library, so it starts in about a second.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

from verticalize.engine_api import EngineClosedError, WorkerRequest

log = logging.getLogger("verticalize.engine")


class EngineProcess:
    """One worker process (``python -m <module>``) serving one model; thread-safe. A worker that dies (killed, out
    of memory) fails the requests it had and is started again; one that cannot be started again closes this proxy
    with the reason, which every later request gets."""

    def __init__(self, module: str, spec: tuple, label: str, unavailable: Callable[[str], Exception]):
        """Start the worker and wait until its model is loaded; ``unavailable(why)`` is raised when it cannot be."""
        self.label = label
        self._module, self._spec, self._unavailable = module, spec, unavailable
        self._lock = threading.Lock()  # one sender at a time; `closed`, `_live` and the worker change under it
        self._live: dict[int, WorkerRequest] = {}
        self._next_id = 0
        self.closed = False
        self._gone: str | None = None  # why the worker is gone for good, when it went without being asked to
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ours, theirs = multiprocessing.Pipe()
        env = dict(os.environ)
        # The worker imports verticalize from where this process did, also when it was put on sys.path by hand.
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        process = subprocess.Popen([sys.executable, "-m", self._module, str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), env=env)
        theirs.close()
        ours.send(self._spec)
        try:
            first = ours.recv()
        except EOFError:
            first = ("failed", None, f"its process ended with exit code {process.wait()}")
        if first[0] != "ready":
            ours.close()
            process.wait()
            raise self._unavailable(first[2])
        self._process, self._conn = process, ours
        self._thread = threading.Thread(target=self._receive, args=(process, ours), name=self.label, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> int:
        """Requests submitted and not finished."""
        return len(self._live)

    def submit(self, live: WorkerRequest) -> None:
        """Send ``live`` (its ``ids`` and ``config``, the worker's options) to the worker."""
        with self._lock:
            if self.closed:
                raise EngineClosedError(self._gone or "this engine is closed; send the request to the engine that "
                                        "replaced it")
            self._next_id += 1
            self._live[self._next_id] = live
            live.handle = self._next_id
            try:
                self._conn.send(("add", self._next_id, live.ids, live.config))
            except OSError as e:  # the worker died a moment ago; the receiving thread is about to restart it
                del self._live[self._next_id]
                raise EngineClosedError(f"the {self.label} worker process is gone ({e}); retry") from e

    def stop(self, live: WorkerRequest) -> None:
        """End ``live`` at the worker's next step (its caller gave up, or its text reached a stop string)."""
        if live.handle not in self._live:  # done, or lost with a dead worker: no need to wait for the lock
            live.stop_asked = True
            return
        with self._lock:
            live.stop_asked = True
            if live.stop_sent or live.handle not in self._live:
                return
            live.stop_sent = True
            try:
                self._conn.send(("stop", live.handle))
            except OSError:
                pass  # the worker is gone: the receiving thread ends this request with that error

    def close(self) -> None:
        """New requests are refused; the ones already submitted finish, then the worker process ends."""
        with self._lock:
            already, self.closed = self.closed, True
            if not already and not self._gone:
                try:
                    self._conn.send(("close",))
                except OSError:
                    pass  # it has just died: nothing is left to drain
        self._thread.join()
        self._process.wait()

    def _receive(self, process: subprocess.Popen, conn: Connection) -> None:
        """Until the worker exits: each "out" message's tokens to their requests, a failure to its request; then,
        if nobody asked it to exit, the lost requests fail and a new worker starts."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "out":
                for rid, new, finish, done in message[1]:
                    live = self._live[rid]
                    if new:
                        live.tokens.put(new)
                    if finish:
                        live.finish = finish
                    if done:
                        del self._live[rid]
                        live.tokens.put(None)
            elif message[0] == "failed":
                live = self._live.pop(message[1])
                live.error = RuntimeError(message[2])
                live.tokens.put(None)
        code = process.wait()
        conn.close()
        with self._lock:  # submissions wait here while a new worker starts (a second or two)
            left, self._live = list(self._live.values()), {}
            why = f"the {self.label} worker process ended unexpectedly (exit code {code})"
            for live in left:
                live.error = RuntimeError(why)
                live.tokens.put(None)
            if self.closed:
                return
            log.warning("%s; %d request(s) in it failed; starting a new one", why, len(left))
            try:
                self._start()
                self.restarts += 1
            except Exception as e:  # noqa: BLE001 - every later request is told why
                self._gone = f"{why} and could not be started again: {e}"
                self.closed = True
                log.error("%s", self._gone)


def start_processes(module: str, label: str, specs: dict[str, tuple],
                    unavailable: Callable[[str, str], Exception]) -> dict[str, EngineProcess]:
    """One `EngineProcess` per served model name (``specs``: name -> the worker's spec). When one cannot start,
    the ones already started are closed and ``unavailable(name, why)`` is raised."""
    started: dict[str, EngineProcess] = {}
    try:
        for name, spec in specs.items():
            started[name] = EngineProcess(module, spec, label, lambda why, name=name: unavailable(name, why))
    except BaseException:
        for process in started.values():
            process.close()
        raise
    return started


def fill(target: Any, fields: dict[str, Any]) -> Any:
    """``target`` with each of ``fields`` set as an attribute (a worker builds a library's config object so)."""
    for name, value in fields.items():
        setattr(target, name, value)
    return target


def worker_main(serve: Callable[..., None]) -> None:
    """A worker module's ``__main__``: ``python -m MODULE FD``, FD being its end of the pipe (inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the proxy closes this one
    conn = Connection(int(sys.argv[1]))
    spec = conn.recv()
    try:
        serve(conn, *spec)
    except (BrokenPipeError, EOFError):
        pass  # the proxy is gone: nobody is left to answer


def failed_to_load(conn: Connection, error: BaseException) -> None:
    """What a worker sends when its model does not load."""
    conn.send(("failed", None, f"{type(error).__name__}: {error}"))


def next_message(conn: Connection, wait: bool) -> Any:
    """The next message; blocks when ``wait``, else None when nothing has arrived."""
    if wait or conn.poll():
        return conn.recv()
    return None
