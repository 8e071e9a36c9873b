"""A short load test of the gateway: 40 requests at concurrency 8 (bounded in count and time).

No request may fail with a 5xx (or be refused: the queue is sized for the load), and every feedback posted for
those responses must be in the SQLite store afterwards, read from the file after the server stopped.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, make_lora_adapter

REQUESTS = 40
CONCURRENCY = 8


@pytest.mark.timeout(300)
def test_load_no_5xx_and_no_lost_feedback(tmp_path: Path, tiny_model_dir: Path):
    run = tmp_path / "run"
    make_lora_adapter(tiny_model_dir, run / "train" / "adapters" / "task", 21)
    make_lora_adapter(tiny_model_dir, run / "train" / "adapters" / "domain", 22)
    # Two requests generate at once, the other six of the client's eight wait in the queue (room for 16).
    (run / "config.yaml").write_text(f"model:\n  base: {tiny_model_dir}\nserve:\n  max_concurrency: 2\n"
                                     "  max_queue: 16\n  max_output_tokens: 16\n", encoding="utf-8")
    # One torch thread: two generations run at once, and spinning thread pools on a shared 2-core machine made
    # each tiny-model step ~8x slower than single-threaded (measured).
    server = ServerProcess(run, env={"OMP_NUM_THREADS": "1"})
    url = server.url
    try:
        def one(i: int) -> tuple[int, int, str | None]:
            with httpx.Client(base_url=url, timeout=120) as http:
                body = {"model": ("task", "domain")[i % 2], "max_tokens": 8, "temperature": 0,
                        "messages": [{"role": "user", "content": f"Question {i}: what is the fee?"}]}
                r = http.post("/v1/chat/completions", json=body)
                if r.status_code != 200:
                    return r.status_code, 0, None
                rid = r.json()["id"]
                fb = http.post("/v1/feedback", json={"response_id": rid, "rating": 1 + i % 5,
                                                     "correction": f"answer {i}" if i % 4 == 0 else None})
                return r.status_code, fb.status_code, rid

        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(one, range(REQUESTS)))
        elapsed = time.perf_counter() - started
    finally:
        server.stop()

    statuses = [s for s, _, _ in results]
    assert statuses == [200] * REQUESTS, f"statuses {sorted(set(statuses))}"
    assert [f for _, f, _ in results] == [200] * REQUESTS
    ids = {rid for _, _, rid in results}
    assert len(ids) == REQUESTS
    with sqlite3.connect(run / "feedback" / "feedback.sqlite") as db:
        stored = dict(db.execute("SELECT response_id, rating FROM feedback").fetchall())
        corrected = db.execute("SELECT COUNT(*) FROM feedback WHERE correction IS NOT NULL").fetchone()[0]
        responses = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert set(stored) == ids and responses == REQUESTS
    assert corrected == REQUESTS // 4
    assert elapsed < 240, f"{REQUESTS} requests took {elapsed:.0f}s"
    print(f"load: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f}s "
          f"({REQUESTS / elapsed:.1f} req/s)")
