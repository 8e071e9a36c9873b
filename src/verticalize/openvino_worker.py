"""The worker process of one OpenVINO GenAI continuous-batching pipeline (`engine_process` says why a process and
what the messages are): it adds requests as they arrive, runs `step()` while any is unfinished, and sends every
request's new tokens after each step in one message."""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import Any

from verticalize.engine_process import failed_to_load, fill, next_message, worker_main


def serve(conn: Connection, path: str, scheduler_fields: dict[str, Any], properties: dict[str, Any]) -> None:
    try:
        import numpy as np
        import openvino as ov
        import openvino_genai as og

        pipe = og.ContinuousBatchingPipeline(path, fill(og.SchedulerConfig(), scheduler_fields), "CPU", properties)
    except Exception as e:  # noqa: BLE001 - the proxy raises it where the engine is built
        failed_to_load(conn, e)
        return
    conn.send(("ready",))
    running = og.GenerationStatus.RUNNING
    active: dict[int, Any] = {}
    closing = False
    while True:
        # Idle: wait for a message. Generating: take what has arrived, then step again.
        while (message := next_message(conn, wait=not active and not closing)) is not None:
            if message[0] == "add":
                _, rid, ids, fields = message
                try:
                    active[rid] = pipe.add_request(rid, ov.Tensor(np.array([ids], dtype=np.int64)),
                                                   fill(og.GenerationConfig(), fields))
                except Exception as e:  # noqa: BLE001 - this request fails, the others go on
                    conn.send(("failed", rid, str(e)))
            elif message[0] == "stop" and message[1] in active:
                active[message[1]].stop()  # its KV-cache blocks are freed at the next step
            elif message[0] == "close":
                closing = True
        if closing and not active:
            return
        try:
            if pipe.has_non_finished_requests():
                pipe.step()
            outs = []
            for rid, handle in list(active.items()):
                new: list[int] = []
                finish = None
                if handle.can_read():
                    for out in handle.read().values():
                        new.extend(out.generated_ids)
                        if str(out.finish_reason).endswith("STOP"):
                            finish = "stop"
                done = handle.get_status() != running and not handle.can_read()
                if new or finish or done:
                    outs.append((rid, new, finish, done))
                if done:
                    del active[rid]
        except Exception as e:  # noqa: BLE001 - every request in the batch fails; the worker stays up
            for rid in active:
                conn.send(("failed", rid, str(e)))
            active.clear()
            continue
        if outs:
            conn.send(("out", outs))


if __name__ == "__main__":
    worker_main(serve)
