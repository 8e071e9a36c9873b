"""Property-based fuzzing of the gateway's HTTP API from its own OpenAPI schema (schemathesis), against a real
server process on loopback with the tiny model: valid and invalid requests for every operation, and not one may
get a 5xx; every 4xx must be in OpenAI's error shape. Bounded in examples per operation and in time."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from conftest import ServerProcess as Server
from conftest import make_lora_adapter

API_KEY = "fuzz-key-1"
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 20}  # per operation
SERVED_EXAMPLES = 25  # and valid completion requests for a served model, so that they reach the engine
BUDGET_S = 40  # for all the requests; the server start comes on top
SKIP = {"POST /admin/reload"}  # it swaps the served run: a fuzzed path is refused, but a valid one reloads models


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    run = tmp_path_factory.mktemp("fuzz-run")
    make_lora_adapter(tiny_model_dir, run / "train" / "adapters" / "task", 1)
    # Few output tokens and a small prompt limit: a valid request costs a few ms of the tiny model.
    (run / "config.yaml").write_text(
        f"model:\n  base: {tiny_model_dir}\nserve:\n  max_output_tokens: 4\n  max_prompt_tokens: 256\n"
        "  request_timeout_s: 30\n", encoding="utf-8")
    s = Server(run, api_key=API_KEY)
    yield s
    s.stop()


def test_fuzz_the_api_from_its_openapi_schema(server: Server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    started = time.monotonic()
    deadline = started + BUDGET_S
    late = 0
    operations = [r.ok() for r in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/chat/completions", "POST /v1/completions",
                                               "GET /v1/models", "POST /v1/feedback", "GET /metrics"}

    def check(case: schemathesis.Case) -> None:
        nonlocal late
        if time.monotonic() > deadline:
            late += 1
            return
        response = case.call(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path} {json.dumps(case.body, default=str)[:300]}"
        if response.status_code >= 500:
            problems.append(f"{response.status_code} for {where}: {response.text[:300]}")
        elif response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
            except (ValueError, KeyError, TypeError, AssertionError):
                problems.append(f"{response.status_code} not in OpenAI's error shape for {where}: "
                                f"{response.text[:300]}")

    def served(case: schemathesis.Case) -> schemathesis.Case:
        case.body = {**case.body, "model": "task"}
        return case

    for operation in operations:
        if operation.label in SKIP:
            continue
        plans = [(mode, n, operation.as_strategy(generation_mode=mode)) for mode, n in EXAMPLES.items()]
        if operation.label in ("POST /v1/chat/completions", "POST /v1/completions"):
            plans.append((GenerationMode.POSITIVE, SERVED_EXAMPLES, operation.as_strategy().map(served)))
        for mode, n, strategy in plans:
            run = settings(max_examples=n, deadline=None, database=None, derandomize=True,
                           suppress_health_check=list(HealthCheck))(given(case=strategy)(check))
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode == GenerationMode.NEGATIVE, operation.label
    total = sum(statuses.values())
    print(f"\nschemathesis: {total} requests over {len(operations) - len(SKIP & {o.label for o in operations})} "
          f"operations in {time.monotonic() - started:.1f} s ({late} examples past the time budget not sent); "
          f"statuses {dict(sorted(statuses.items()))}; 5xx: {sum(v for k, v in statuses.items() if k >= 500)}")
    assert not problems, "\n".join(problems[:20])
    assert total >= 100 and statuses[200] >= 10  # it really exercised the API, valid requests included
