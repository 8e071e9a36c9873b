"""The console's HTTP layer: the JSON API of docs/console.md and the web app's static files.

The playground, the feedback and the review queue go through each run's own gateway (`serve.build_gateway` +
`create_app`, in-process, called over ASGI), so an answer in the playground is the one `verticalize serve`
gives, feedback lands in the run's review queue with the sender's key fingerprint, and the gateway's review
rules (a review key; no approving your own feedback) apply unchanged.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import httpx
from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from verticalize import __version__
from verticalize.artifacts import RunDir, read_jsonl
from verticalize.console.projects import ConsoleError, ProjectStore, Upload, metric_catalog
from verticalize.console.runs import LOG, RunManager, read_events
from verticalize.rungs import RUNG_NAMES, Rung
from verticalize.serve.service import bearer_matches

STATIC = resources.files("verticalize.console") / "static"
MAX_UPLOAD_BYTES = 50 * 2**20  # per file, as ingest.max_file_mb's default


class GatesBody(BaseModel):
    gates: list[dict[str, Any]] = Field(default_factory=list)


class StartBody(BaseModel):
    set: list[str] = Field(default_factory=list, max_length=100)
    iterate_from: Optional[str] = None


class QuestionBody(BaseModel):
    question: str = Field(min_length=1, max_length=4000)


class FeedbackBody(BaseModel):
    response_id: str = Field(min_length=1, max_length=200)
    rating: int = Field(ge=-1, le=1)
    correction: Optional[str] = Field(None, max_length=20000)
    comment: Optional[str] = Field(None, max_length=5000)


class ReviewBody(BaseModel):
    note: Optional[str] = Field(None, max_length=5000)
    correction: Optional[str] = Field(None, max_length=20000)


def error_json(message: str, status: int, code: str = "invalid_request", param: str | None = None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "permission_error" if status == 403 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}},
                        status_code=status)


class RunGateways:
    """An in-process gateway per run directory, built on first use (its engine loads then); the ``keep`` most
    recently used stay loaded, an older one is closed (its models freed)."""

    def __init__(self, keep: int = 2) -> None:
        self._apps: dict[str, Any] = {}  # insertion order = least recently used first
        self._lock = threading.Lock()
        self.keep = keep

    def app(self, run_dir: Path) -> Any:
        key = str(run_dir.resolve())
        with self._lock:
            if key in self._apps:
                self._apps[key] = self._apps.pop(key)
                return self._apps[key]
            from verticalize.serve import build_gateway, create_app, load_run_config

            run = RunDir(run_dir)
            self._apps[key] = create_app(build_gateway(load_run_config(run), run))
            while len(self._apps) > self.keep:
                _close(self._apps.pop(next(iter(self._apps))))
            return self._apps[key]

    def close(self) -> None:
        with self._lock:
            apps, self._apps = list(self._apps.values()), {}
        for app in apps:
            _close(app)

    async def call(self, run_dir: Path, method: str, path: str, request: Request, body: Any = None,
                   params: dict[str, Any] | None = None) -> tuple[int, Any]:
        app = await asyncio.to_thread(self.app, run_dir)
        headers = {"authorization": request.headers["authorization"]} if "authorization" in request.headers else {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=600) as client:
            r = await client.request(method, path, json=body, params=params, headers=headers)
        return r.status_code, r.json()


def _close(app: Any) -> None:
    engine = getattr(app.state.gateway.engine, "current", app.state.gateway.engine)
    if hasattr(engine, "close"):
        engine.close()


def create_console_app(root: Path, api_keys: set[str] | None = None) -> FastAPI:
    app = FastAPI(title="verticalize console", version=__version__)
    projects = ProjectStore(root)
    runs = RunManager(projects)
    gateways = RunGateways()
    keys = {k for k in (api_keys or set()) if k}
    app.state.projects, app.state.runs, app.state.gateways = projects, runs, gateways

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/api/") and keys and not bearer_matches(request, keys):
            return error_json("Incorrect or missing API key. Send 'Authorization: Bearer <key>'.", 401,
                              "invalid_api_key")
        return await call_next(request)

    @app.exception_handler(ConsoleError)
    async def _console_error(_: Request, e: ConsoleError) -> JSONResponse:
        return error_json(str(e), e.status, e.code, e.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", [])[1:]) or None
        return error_json(f"{param or 'request'}: {first.get('msg', 'invalid request')}", 400, param=param)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, e: HTTPException) -> JSONResponse:
        return error_json(str(e.detail), e.status_code, {404: "not_found", 405: "method_not_allowed"}.get(
            e.status_code, "http_error"))

    @app.on_event("shutdown")
    def _shutdown() -> None:
        runs.close()
        gateways.close()

    _add_project_routes(app, projects, runs)
    _add_run_routes(app, runs)
    _add_answer_routes(app, runs, gateways)

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    return app


# ---------------------------------------------------------------------------------------------- projects
def _add_project_routes(app: FastAPI, projects: ProjectStore, runs: RunManager) -> None:
    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/api/metrics")
    async def metrics() -> dict[str, Any]:
        return {"metrics": metric_catalog(), "rungs": list(RUNG_NAMES), "comparisons": [">=", "<=", ">", "<"]}

    @app.get("/api/projects")
    async def list_projects() -> dict[str, Any]:
        out = []
        for name in projects.names():
            info = projects.info(name)
            done = runs.list(name)
            out.append({**info, "last_run": done[-1] if done else None})
        return {"projects": out}

    @app.post("/api/projects", status_code=201)
    async def create_project(request: Request) -> dict[str, Any]:
        name, uploads, folder = await _project_form(request)
        return await asyncio.to_thread(projects.create, name, uploads, folder)

    @app.get("/api/projects/{name}")
    async def get_project(name: str) -> dict[str, Any]:
        return {"project": projects.info(name), "manifest": projects.manifest(name), "runs": runs.list(name)}

    @app.put("/api/projects/{name}/gates")
    async def put_gates(name: str, body: GatesBody) -> dict[str, Any]:
        return {"gates": projects.set_gates(name, body.gates)}

    @app.post("/api/projects/{name}/runs", status_code=202)
    async def start_run(name: str, body: StartBody) -> dict[str, Any]:
        return {"run": runs.start(name, body.set, body.iterate_from)}


async def _project_form(request: Request) -> tuple[str, list[Upload], str | None]:
    """(name, uploads, folder) from a multipart form (name + files) or a JSON body (name + folder)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise ConsoleError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ConsoleError("the body must be a JSON object with name and folder")
        return str(body.get("name") or ""), [], (str(body["folder"]) if body.get("folder") else None)
    if not kind.startswith("multipart/form-data"):
        raise ConsoleError("send multipart/form-data (name, files) or JSON (name, folder)")
    form = await request.form()
    uploads = []
    for item in form.getlist("files"):
        if isinstance(item, str):  # a field named files that is not a file
            continue
        data = await _read_limited(item)
        uploads.append(Upload(item.filename or "", data))
    folder = form.get("folder")
    return str(form.get("name") or ""), uploads, (str(folder) if folder else None)


async def _read_limited(item: UploadFile) -> bytes:
    data = await item.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ConsoleError(f"{item.filename}: larger than {MAX_UPLOAD_BYTES // 2**20} MB", status=413,
                           param="files", code="file_too_large")
    return data


# ---------------------------------------------------------------------------------------------- runs
def _add_run_routes(app: FastAPI, runs: RunManager) -> None:
    @app.get("/api/runs")
    async def list_runs(project: Optional[str] = None) -> dict[str, Any]:
        return {"runs": runs.list(project)}

    @app.get("/api/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        return {"run": runs.record(run_id), "log_tail": runs.log_tail(run_id)}

    @app.post("/api/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> dict[str, Any]:
        return {"run": await asyncio.to_thread(runs.cancel, run_id)}

    @app.post("/api/runs/{run_id}/iterate", status_code=202)
    async def iterate(run_id: str) -> dict[str, Any]:
        return {"run": runs.start(runs.record(run_id)["project"], [], iterate_from=run_id)}

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: str) -> StreamingResponse:
        job = runs.job_dir(run_id)
        return StreamingResponse(_event_stream(runs, run_id, job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/api/runs/{run_id}/ladder")
    async def ladder(run_id: str) -> dict[str, Any]:
        data = _ladder(runs, run_id)
        return {**data, "gaps": _gaps(data)}

    @app.get("/api/runs/{run_id}/report", response_class=HTMLResponse)
    async def report(run_id: str) -> HTMLResponse:
        path = RunDir(runs.run_dir(run_id)).report_html
        if not path.is_file():
            raise ConsoleError(f"run {run_id} has no report yet", status=404, code="no_report")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    @app.get("/api/runs/{run_id}/questions")
    async def questions(run_id: str) -> dict[str, Any]:
        return _questions(RunDir(runs.run_dir(run_id)), _ladder(runs, run_id))


async def _event_stream(runs: RunManager, run_id: str, job: Path) -> Any:
    """Past progress first, then new lines as they come; `end` once the run is over."""
    sent_events, log_pos = 0, 0
    while True:
        status = runs.record(run_id)["status"]
        events = read_events(job)
        for event in events[sent_events:]:
            yield _sse("stage", {"stage": event.get("stage"), "status": event.get("status")})
        sent_events = len(events)
        log = job / LOG
        if log.is_file() and log.stat().st_size > log_pos:
            with open(log, "rb") as fh:
                fh.seek(log_pos)
                chunk = fh.read()
            log_pos += len(chunk)
            for line in chunk.decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    yield _sse("log", {"line": line[-2000:]})
        if status != "running":
            yield _sse("end", {"status": status})
            return
        await asyncio.sleep(0.5)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _ladder(runs: RunManager, run_id: str) -> dict[str, Any]:
    path = RunDir(runs.run_dir(run_id)).ladder
    if not path.is_file():
        raise ConsoleError(f"run {run_id} has no ladder yet (its eval stage has not finished)", status=404,
                           code="no_ladder")
    return json.loads(path.read_text(encoding="utf-8"))


def _gaps(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate against each rung, from the ladder's own gate results: value, threshold and the signed gap
    (≥ 0 passes)."""
    out = []
    for gate in ladder.get("gates") or []:
        for rung, res in (gate.get("results") or {}).items():
            value = res.get("value")
            gap = None
            if value is not None:
                gap = value - gate["threshold"] if gate["op"] in (">=", ">") else gate["threshold"] - value
            out.append({"gate": gate["goal"], "metric": gate["metric"], "op": gate["op"],
                        "threshold": gate["threshold"], "rung": rung, "value": value,
                        "gap": None if gap is None else round(gap, 6), "passed": res["passed"]})
    return out


def _questions(run: RunDir, ladder: dict[str, Any]) -> dict[str, Any]:
    """Each test question with every rung's answer, score and retrieved sources."""
    rungs = list((ladder.get("rungs") or {}).keys())
    chunks = {}
    if run.chunks.is_file():
        chunks = {c["id"]: c.get("text", "") for c in read_jsonl(run.chunks)}
    table: dict[str, dict[str, Any]] = {}
    for rung in rungs:
        path = run.predictions(rung)
        if not path.is_file():
            continue
        for row in read_jsonl(path):
            q = table.setdefault(row["id"], {"id": row["id"], "question": row.get("question"),
                                             "reference": row.get("reference"), "answerable": row.get("answerable"),
                                             "answers": {}})
            scores = row.get("scores") or {}
            q["answers"][rung] = {
                "prediction": row.get("prediction"), "f1": scores.get("f1"), "exact_match": scores.get("exact_match"),
                "refused": row.get("refused"), "latency_ms": row.get("latency_ms"),
                "sources": [{**s, "text": chunks.get(s.get("chunk_id"), "")[:600]} for s in row.get("retrieved") or []]}
    return {"rungs": rungs, "questions": list(table.values())}


# ---------------------------------------------------------------------------------------------- answers
def _add_answer_routes(app: FastAPI, runs: RunManager, gateways: RunGateways) -> None:
    @app.post("/api/runs/{run_id}/playground")
    async def playground(run_id: str, body: QuestionBody, request: Request) -> dict[str, Any]:
        run_dir = runs.run_dir(run_id)
        status, models = await gateways.call(run_dir, "GET", "/v1/models", request)
        if status != 200:
            return JSONResponse(models, status_code=status)
        names = [m["id"] for m in models.get("data", [])]
        if not names:
            raise ConsoleError(f"run {run_id} serves no model", status=409, code="no_model")
        plan = _rung_plan(RunDir(run_dir), names)

        async def one(rung: str, model: str, rag: bool) -> dict[str, Any]:
            started = time.perf_counter()
            status, out = await gateways.call(run_dir, "POST", "/v1/chat/completions", request, body={
                "model": model, "messages": [{"role": "user", "content": body.question}], "temperature": 0,
                "rag": rag})
            latency = round((time.perf_counter() - started) * 1000, 1)
            if status != 200:
                return {"rung": rung, "model": model, "rag": rag, "error": out.get("error", {}).get("message"),
                        "latency_ms": latency}
            return {"rung": rung, "model": model, "rag": rag, "text": out["choices"][0]["message"]["content"],
                    "latency_ms": latency, "response_id": out.get("id"),
                    "sources": [{k: s.get(k) for k in ("source", "chunk_id", "text", "score")}
                                for s in out.get("sources") or []]}

        answers = await asyncio.gather(*(one(*step) for step in plan))
        return {"answers": list(answers)}

    @app.post("/api/runs/{run_id}/feedback")
    async def feedback(run_id: str, body: FeedbackBody, request: Request) -> Any:
        status, out = await gateways.call(runs.run_dir(run_id), "POST", "/v1/feedback", request,
                                          body=body.model_dump(exclude_none=True))
        return JSONResponse(out, status_code=status)

    @app.get("/api/runs/{run_id}/review")
    async def review_queue(run_id: str, request: Request, status: Optional[str] = None) -> Any:
        code, out = await gateways.call(runs.run_dir(run_id), "GET", "/v1/feedback", request,
                                        params={"status": status} if status else None)
        return JSONResponse(out, status_code=code)

    @app.post("/api/runs/{run_id}/review/{feedback_id}/{decision}")
    async def review(run_id: str, feedback_id: int, decision: str, request: Request,
                     body: Optional[ReviewBody] = None) -> Any:
        code, out = await gateways.call(runs.run_dir(run_id), "POST", f"/v1/feedback/{feedback_id}/{decision}",
                                        request, body=(body or ReviewBody()).model_dump(exclude_none=True))
        return JSONResponse(out, status_code=code)


def _rung_plan(run: RunDir, models: list[str]) -> list[tuple[str, str, bool]]:
    """(rung, model, rag) for each rung the run measured (else prompt/rag and, with an adapter, peft/peft+rag):
    the base model is the gateway's first, the adapter the ladder's (else the last one served)."""
    ladder = json.loads(run.ladder.read_text(encoding="utf-8")) if run.ladder.is_file() else {}
    adapter = (ladder.get("settings") or {}).get("adapter") or (models[-1] if len(models) > 1 else None)
    measured = [r for r in (ladder.get("rungs") or {}) if r in RUNG_NAMES and r != "full"]
    wanted = measured or (["prompt", "rag", "peft", "peft+rag"] if adapter else ["prompt", "rag"])
    plan = []
    for rung in wanted:
        r = Rung.parse(rung)
        if r.uses_adapter and adapter not in models:
            continue
        plan.append((rung, adapter if r.uses_adapter else models[0], r.uses_knowledge_base))
    return plan
