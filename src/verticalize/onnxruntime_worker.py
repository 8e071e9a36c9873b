"""The worker process of one onnxruntime-genai model (`engine_process` says why a process and what the messages
are): it runs its requests one at a time, in the order they came, and sends each new token as it is made; between
two tokens it reads what has arrived, so a stop ends the running request at once."""

from __future__ import annotations

import json
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from verticalize.engine_process import failed_to_load, next_message, worker_main


class _Inbox:
    """What the proxy has sent and this worker has not acted on yet."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[int, list[int], dict[str, Any]]] = deque()
        self.stopped: set[int] = set()
        self.closing = False

    def read(self, conn: Connection, wait: bool) -> None:
        """Everything that has arrived; with ``wait``, blocks for the first message."""
        while (message := next_message(conn, wait)) is not None:
            wait = False
            if message[0] == "add":
                self.waiting.append(message[1:])
            elif message[0] == "stop":
                self.stopped.add(message[1])
            elif message[0] == "close":
                self.closing = True


def serve(conn: Connection, path: str, threads: int, eos: set[int]) -> None:
    try:
        import onnxruntime_genai as og

        config = og.Config(path)
        if threads:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        model = og.Model(config)
    except Exception as e:  # noqa: BLE001 - the proxy raises it where the engine is built
        failed_to_load(conn, e)
        return
    conn.send(("ready",))
    inbox = _Inbox()
    while True:
        inbox.read(conn, wait=not inbox.waiting and not inbox.closing)
        if not inbox.waiting:
            if inbox.closing:
                return
            continue
        rid, ids, options = inbox.waiting.popleft()
        try:
            _generate(og, model, conn, inbox, rid, ids, options, eos)
        except (BrokenPipeError, EOFError):
            raise
        except Exception as e:  # noqa: BLE001 - this request fails, the next ones go on
            conn.send(("failed", rid, str(e)))
        inbox.stopped.discard(rid)


def _generate(og: Any, model: Any, conn: Connection, inbox: _Inbox, rid: int, ids: list[int],
              options: dict[str, Any], eos: set[int]) -> None:
    params = og.GeneratorParams(model)
    search: dict[str, Any] = {"max_length": len(ids) + options["max_tokens"], "do_sample": False}
    if options["temperature"] > 0:
        search.update(do_sample=True, temperature=options["temperature"], top_p=options["top_p"], top_k=0)
        if options["seed"] is not None:
            search["random_seed"] = options["seed"] % 2**31  # it takes a 32-bit int; OpenAI's seed is any int
    params.set_search_options(**search)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    produced = 0
    while rid not in inbox.stopped and not generator.is_done() and produced < options["max_tokens"]:
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        produced += 1
        if token in eos:
            conn.send(("out", [(rid, [token], "stop", True)]))
            return
        conn.send(("out", [(rid, [token], None, False)]))
        inbox.read(conn, wait=False)
    # the model's own end of sequence (genai_config's eos ids) ends it as "stop"; a stop asked for, or max_tokens, not
    finish = "stop" if generator.is_done() and produced < options["max_tokens"] else None
    conn.send(("out", [(rid, [], finish, True)]))


if __name__ == "__main__":
    worker_main(serve)
