"""The console's API on the tiny model: projects from uploads and folders (bad files listed with their reason),
gates in plain words with validation, a real run in a worker process with its live events, the ladder with the
gaps to each gate, the per-question drill-down, the playground through the run's gateway, feedback into the
review queue, approval with an edited correction, the next iteration, cancel, and the key rule."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from verticalize.console import create_console_app

DEMO_DOCS = Path(str(resources.files("verticalize") / "examples" / "demo" / "docs"))


def tiny_overrides(tiny_model_dir: Path) -> list[str]:
    return [f"model.base={tiny_model_dir}", "train.max_steps=3", "train.eval_every=3", "train.batch_tokens=256",
            "eval.max_examples=4", "eval.max_new_tokens=4", "eval.few_shot=1",
            "train.lora.target_modules=[q_proj, v_proj]", "eval.general_probe=false"]


def wait_done(client: TestClient, run_id: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()["run"]
        if run["status"] != "running":
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    app = create_console_app(tmp_path_factory.mktemp("console"))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def finished_run(client: TestClient, tiny_model_dir: Path) -> dict:
    r = client.post("/api/projects", json={"name": "bank", "folder": str(DEMO_DOCS)})
    assert r.status_code == 201, r.text
    gates = [{"goal": "answers match the rules", "metric": "f1", "op": ">=", "threshold": 0.5},
             {"goal": "fast enough for the counter", "metric": "p99_latency_ms", "op": "<=", "threshold": 60000}]
    assert client.put("/api/projects/bank/gates", json={"gates": gates}).status_code == 200
    r = client.post("/api/projects/bank/runs", json={"set": tiny_overrides(tiny_model_dir)})
    assert r.status_code == 202, r.text
    run = wait_done(client, r.json()["run"]["id"])
    assert run["status"] == "done", client.get(f"/api/runs/{run['id']}").json()["log_tail"]
    return run


def test_health_and_metric_catalog(client: TestClient) -> None:
    assert client.get("/api/health").json()["ok"] is True
    cat = client.get("/api/metrics").json()
    names = {m["name"]: m for m in cat["metrics"]}
    assert names["f1"]["higher_is_better"] is True and names["false_refusal_rate"]["higher_is_better"] is False
    assert "peft+rag" in cat["rungs"] and ">=" in cat["comparisons"]


def test_upload_lists_bad_files_with_reasons_and_keeps_the_good(client: TestClient) -> None:
    files = [("files", ("rules.md", b"# Card rules\n\nThe annual fee of the Gold card is 300 yuan, waived after "
                                    b"six purchases a year. Late payment costs 5 percent of the amount due.\n",
                        "text/markdown")),
             ("files", ("faq_zh.txt", "信用卡年费在一年内刷卡六次后免收。逾期超过90天，银行应当停止计息。".encode(),
                        "text/plain")),
             ("files", ("empty.txt", b"", "text/plain")),
             ("files", (".secret", b"x", "text/plain")),
             ("files", ("tool.exe", b"MZ\x90\x00binary", "application/octet-stream"))]
    r = client.post("/api/projects", data={"name": "uploads"}, files=files)
    assert r.status_code == 201, r.text
    body = r.json()
    by_path = {f["path"]: f for f in body["manifest"]["files"]}
    assert by_path["rules.md"]["status"] == "ok" and by_path["rules.md"]["chunks"] >= 1
    assert by_path["faq_zh.txt"]["status"] == "ok"
    assert by_path["empty.txt"] == {"path": "empty.txt", "status": "skipped", "reason": "empty file", "chunks": 0,
                                    "chars": 0}
    assert by_path[".secret"]["reason"] == "no usable file name"
    assert by_path["tool.exe"]["status"] == "skipped" and ".exe" in by_path["tool.exe"]["reason"]
    assert body["manifest"]["counts"] == {"ok": 2, "skipped": 3, "chunks": body["manifest"]["counts"]["chunks"]}
    assert body["project"]["documents"] == 3  # rules.md, faq_zh.txt, tool.exe are kept on disk: nothing lost
    again = client.get("/api/projects/uploads").json()
    assert {f["path"] for f in again["manifest"]["files"]} >= {"rules.md", "faq_zh.txt", "tool.exe"}


@pytest.mark.parametrize("payload, status, param, fragment", [
    ({"name": "bad name!", "folder": str(DEMO_DOCS)}, 400, "name", "use 1–64 letters"),
    ({"name": "nofolder", "folder": "/no/such/folder"}, 400, "folder", "does not exist on the server"),
    ({"name": "nothing"}, 400, "files", "give the documents"),
])
def test_bad_project_requests_say_what_is_wrong(client: TestClient, payload, status, param, fragment) -> None:
    r = client.post("/api/projects", json=payload)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and fragment in err["message"]


def test_no_usable_document_refuses_the_project_and_keeps_nothing(client: TestClient) -> None:
    r = client.post("/api/projects", data={"name": "hollow"}, files=[("files", ("a.txt", b"", "text/plain"))])
    assert r.status_code == 400
    assert "none of the documents can be used (a.txt: empty file)" in r.json()["error"]["message"]
    assert client.get("/api/projects/hollow").status_code == 404
    assert client.post("/api/projects", data={"name": "hollow"},
                       files=[("files", ("a.md", b"Enough text to make one chunk of a document here.", "text/plain"))]
                       ).status_code == 201


def test_a_project_name_is_taken_once(client: TestClient) -> None:
    assert client.post("/api/projects", json={"name": "twice", "folder": str(DEMO_DOCS)}).status_code == 201
    r = client.post("/api/projects", json={"name": "twice", "folder": str(DEMO_DOCS)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "project_exists"


@pytest.mark.parametrize("gate, param, fragment", [
    ({"goal": "", "metric": "f1", "op": ">=", "threshold": 0.8}, "gates[0].goal", "say the business goal"),
    ({"goal": "g", "metric": "f2", "op": ">=", "threshold": 0.8}, "gates[0].metric", "metric 'f2' is unknown"),
    ({"goal": "g", "metric": "f1", "op": "=>", "threshold": 0.8}, "gates[0].op", "comparison '=>' is unknown"),
    ({"goal": "g", "metric": "f1", "op": ">=", "threshold": "high"}, "gates[0].threshold", "is not a number"),
    ({"goal": "g", "metric": "f1", "op": ">=", "threshold": 85}, "gates[0].threshold", "share between 0 and 1"),
    ({"goal": "g", "metric": "f1", "op": ">=", "threshold": 0.8, "rung": "lora"}, "gates[0].rung",
     "rung 'lora' is unknown"),
])
def test_gates_are_validated(client: TestClient, gate, param, fragment) -> None:
    if client.get("/api/projects/gated").status_code == 404:
        client.post("/api/projects", json={"name": "gated", "folder": str(DEMO_DOCS)})
    r = client.put("/api/projects/gated/gates", json={"gates": [gate]})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == param and fragment in r.json()["error"]["message"]


def test_a_run_goes_through_every_stage_with_live_events(client: TestClient, finished_run: dict) -> None:
    run_id = finished_run["id"]
    assert [s["stage"] for s in finished_run["stages"]] == ["ingest", "kb", "data", "train", "eval", "report"]
    assert all(s["status"] == "done" and s["seconds"] >= 0 for s in finished_run["stages"])
    assert finished_run["has_ladder"] is True
    with client.stream("GET", f"/api/runs/{run_id}/events") as r:
        text = "".join(r.iter_text())
    events = [(block.split("\n")[0][7:], json.loads(block.split("\n")[1][6:]))
              for block in text.strip().split("\n\n")]
    stages = [d for kind, d in events if kind == "stage"]
    assert {"stage": "train", "status": "running"} in stages
    assert events[-1] == ("end", {"status": "done"})
    assert any(kind == "log" for kind, _ in events)
    assert any(r["id"] == run_id for r in client.get("/api/runs").json()["runs"])
    projects = {p["name"]: p for p in client.get("/api/projects").json()["projects"]}
    assert projects["bank"]["last_run"]["id"] == run_id and projects["bank"]["gates"][0]["metric"] == "f1"


def test_the_ladder_shows_the_gap_to_each_gate(client: TestClient, finished_run: dict) -> None:
    ladder = client.get(f"/api/runs/{finished_run['id']}/ladder").json()
    assert set(ladder["rungs"]) == {"prompt", "rag", "peft", "peft+rag"}
    gaps = [g for g in ladder["gaps"] if g["metric"] == "f1"]
    assert {g["rung"] for g in gaps} == set(ladder["rungs"])
    for g in gaps:
        assert g["gap"] == pytest.approx(ladder["rungs"][g["rung"]]["f1"] - 0.5, abs=1e-6)
        assert g["passed"] == (g["gap"] >= 0)
    latency = next(g for g in ladder["gaps"] if g["metric"] == "p99_latency_ms")
    assert latency["gap"] == pytest.approx(60000 - ladder["rungs"][latency["rung"]]["p99_latency_ms"], abs=1e-3)
    assert ladder["recommendation"]["rung"] in ladder["rungs"]
    html = client.get(f"/api/runs/{finished_run['id']}/report")
    assert html.status_code == 200 and "<html" in html.text.lower()


def test_drill_down_gives_every_rungs_answer_and_sources(client: TestClient, finished_run: dict) -> None:
    q = client.get(f"/api/runs/{finished_run['id']}/questions").json()
    assert q["rungs"] == ["prompt", "rag", "peft", "peft+rag"] and len(q["questions"]) == 4
    first = q["questions"][0]
    assert set(first["answers"]) == set(q["rungs"]) and first["question"]
    assert first["answers"]["rag"]["sources"] and first["answers"]["rag"]["sources"][0]["text"]
    assert first["answers"]["prompt"]["sources"] == []


def test_playground_feedback_review_and_next_iteration(client: TestClient, finished_run: dict) -> None:
    run_id = finished_run["id"]
    r = client.post(f"/api/runs/{run_id}/playground", json={"question": "What is the annual fee of the Classic card?"})
    assert r.status_code == 200, r.text
    answers = {a["rung"]: a for a in r.json()["answers"]}
    assert set(answers) == {"prompt", "rag", "peft", "peft+rag"}
    assert answers["rag"]["rag"] is True and answers["rag"]["sources"]
    assert answers["peft"]["model"] == "task" and answers["prompt"]["model"] != "task"
    assert all(isinstance(a["text"], str) and a["response_id"] for a in answers.values())
    fb = client.post(f"/api/runs/{run_id}/feedback", json={"response_id": answers["peft"]["response_id"],
                                                           "rating": -1, "correction": "120 yuan a year"})
    assert fb.status_code == 200 and fb.json()["status"] == "pending", fb.text
    queue = client.get(f"/api/runs/{run_id}/review", params={"status": "pending"}).json()["data"]
    row = next(x for x in queue if x["id"] == fb.json()["id"])
    assert row["correction"] == "120 yuan a year" and row["question"].startswith("What is the annual fee")
    ok = client.post(f"/api/runs/{run_id}/review/{row['id']}/approve",
                     json={"note": "checked against the fee table", "correction": "100 yuan a year"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    assert ok.json()["correction"] == "100 yuan a year"
    assert client.post(f"/api/runs/{run_id}/review/{row['id']}/maybe").status_code in (400, 404, 422)
    nxt = client.post(f"/api/runs/{run_id}/iterate")
    assert nxt.status_code == 202, nxt.text
    new = wait_done(client, nxt.json()["run"]["id"])
    assert new["status"] == "done", client.get(f"/api/runs/{new['id']}").json()["log_tail"]
    assert new["iteration_of"] == run_id and new["name"].endswith(".v2")
    stages = {s["stage"]: s["status"] for s in new["stages"]}
    assert stages["ingest"] == stages["kb"] == "cached" and stages["train"] == "done"  # shown as cached
    seed = Path(new["run_dir"]) / "data"
    assert seed.is_dir()


def test_cancel_stops_a_run(client: TestClient, tiny_model_dir: Path) -> None:
    client.post("/api/projects", json={"name": "stopme", "folder": str(DEMO_DOCS)})
    r = client.post("/api/projects/stopme/runs", json={"set": tiny_overrides(tiny_model_dir)})
    run_id = r.json()["run"]["id"]
    stopped = client.post(f"/api/runs/{run_id}/cancel")
    assert stopped.status_code == 200 and stopped.json()["run"]["status"] == "cancelled"
    again = client.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_running"
    assert client.get(f"/api/runs/{run_id}").json()["run"]["status"] == "cancelled"


def test_run_settings_are_checked(client: TestClient) -> None:
    client.post("/api/projects", json={"name": "settings", "folder": str(DEMO_DOCS)})
    r = client.post("/api/projects/settings/runs", json={"set": ["project.run_dir=/tmp/elsewhere"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "set"
    assert client.get("/api/runs/settings:nope").status_code == 404
    assert client.get("/api/runs/nope").json()["error"]["code"] == "project_not_found"


def test_an_api_key_guards_the_api_but_not_the_page(tmp_path: Path) -> None:
    with TestClient(create_console_app(tmp_path, {"k-one", "k-two"})) as c:
        r = c.get("/api/projects")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/api/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/projects", headers={"Authorization": "Bearer k-two"}).status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert c.get("/static/app.js").status_code == 200
