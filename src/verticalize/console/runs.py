"""Console runs: each one a `verticalize.console.worker` process on a run directory under ``PROJECT/runs/``
(an iteration: the next version beside the run it iterates on, as `run --iterate` names it).

The console's own bookkeeping stays out of the run directory, in ``PROJECT/jobs/<run name>/``: ``console.json``
(status, times, command, run directory, the run it iterates on), ``console.log`` (the worker's output) and
``events.jsonl`` (stage progress, written by the worker). A watcher thread sets the final status when the process
ends; a run whose process is gone without a final status (the console was stopped meanwhile) reads as failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, next_run_version
from verticalize.console.projects import ConsoleError, ProjectStore

RECORD, LOG, EVENTS = "console.json", "console.log", "events.jsonl"
STAGES = ("ingest", "kb", "data", "train", "eval", "report")


class RunManager:
    def __init__(self, projects: ProjectStore):
        self.projects = projects
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ finding
    def job_dir(self, run_id: str) -> Path:
        project, _, name = (run_id or "").partition(":")
        path = self.projects.get_dir(project) / "jobs" / name
        if not name or "/" in name or name.startswith(".") or not (path / RECORD).is_file():
            raise ConsoleError(f"no run {run_id!r}", status=404, code="run_not_found")
        return path

    def run_dir(self, run_id: str) -> Path:
        """The run directory (what `verticalize serve`, `report` … take) of a console run."""
        return Path(json.loads((self.job_dir(run_id) / RECORD).read_text(encoding="utf-8"))["run_dir"])

    def list(self, project: str | None = None) -> list[dict[str, Any]]:
        names = [project] if project else self.projects.names()
        out = []
        for name in names:
            jobs = self.projects.get_dir(name) / "jobs"
            for path in sorted(jobs.glob("*")) if jobs.is_dir() else []:
                if (path / RECORD).is_file():
                    out.append(self.record(f"{name}:{path.name}"))
        return sorted(out, key=lambda r: r.get("started") or 0)

    def record(self, run_id: str) -> dict[str, Any]:
        path = self.job_dir(run_id)
        rec = json.loads((path / RECORD).read_text(encoding="utf-8"))
        if rec["status"] == "running" and run_id not in self._procs and not _alive(rec.get("pid")):
            rec.update(status="failed", note="the run's process ended without a result (the console was stopped?)")
        rec["stages"] = self.stages(path)
        rec["has_ladder"] = RunDir(rec["run_dir"]).ladder.is_file()
        return rec

    @staticmethod
    def stages(path: Path) -> list[dict[str, Any]]:
        """The latest status of each stage, from the worker's progress lines."""
        latest: dict[str, dict[str, Any]] = {}
        started: dict[str, float] = {}
        for event in read_events(path):
            stage, status = event.get("stage"), str(event.get("status"))
            if status == "running":
                started[stage] = event.get("t", 0)
            entry = {"stage": stage, "status": status.split(" in ")[0] if status.startswith("done") else status}
            if status.startswith("done") and stage in started:
                entry["seconds"] = round(event.get("t", 0) - started[stage], 1)
            latest[stage] = entry
        return list(latest.values())

    def log_tail(self, run_id: str, size: int = 4096) -> str:
        log = self.job_dir(run_id) / LOG
        if not log.is_file():
            return ""
        with open(log, "rb") as fh:
            fh.seek(max(0, log.stat().st_size - size))
            return fh.read().decode("utf-8", errors="replace")

    # ------------------------------------------------------------------------------------------ starting
    def start(self, project: str, overrides: list[str], iterate_from: str | None = None) -> dict[str, Any]:
        pdir = self.projects.get_dir(project)
        for item in overrides:
            if "=" not in item or item.startswith("project.run_dir"):
                raise ConsoleError(f"setting {item!r}: write key=value (project.run_dir is the console's)",
                                   param="set")
        info = self.projects.info(project)
        overrides = [*info.get("overrides", []), *overrides]
        if iterate_from:
            source_rec = self.record(iterate_from)
            overrides = [*source_rec.get("overrides", []), *overrides]  # the next version keeps its settings
            if source_rec["status"] != "done":
                raise ConsoleError(f"run {iterate_from} has not finished: iterate on a finished run", status=409,
                                   code="run_not_finished")
            source = self.run_dir(iterate_from)
            run_dir, job_of = next_run_version(source), source  # the worker creates it (`run --iterate`)
        else:
            run_dir = pdir / "runs" / time.strftime("run-%Y%m%d-%H%M%S")
            while run_dir.exists() or (pdir / "jobs" / run_dir.name).exists():
                run_dir = run_dir.with_name(run_dir.name + "x")
            job_of = run_dir
        path = pdir / "jobs" / run_dir.name
        path.mkdir(parents=True, exist_ok=True)
        run_id = f"{project}:{run_dir.name}"
        cmd = [sys.executable, "-m", "verticalize.console.worker", str(pdir / "config.yaml"), str(path / EVENTS),
               "--set", f"project.run_dir={job_of}", *[a for o in overrides for a in ("--set", o)]]
        if iterate_from:
            cmd.append("--iterate")
        rec = {"id": run_id, "project": project, "name": run_dir.name, "status": "running", "started": time.time(),
               "ended": None, "command": cmd, "iteration_of": iterate_from, "run_dir": str(run_dir),
               "overrides": overrides}
        log = open(path / LOG, "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        rec["pid"] = proc.pid
        _write(path / RECORD, rec)
        with self._lock:
            self._procs[run_id] = proc
        threading.Thread(target=self._watch, args=(run_id, path, proc), daemon=True).start()
        return self.record(run_id)

    def _watch(self, run_id: str, path: Path, proc: subprocess.Popen) -> None:
        code = proc.wait()
        rec = json.loads((path / RECORD).read_text(encoding="utf-8"))
        if rec["status"] == "running":
            rec["status"] = "done" if code == 0 else "failed"
        rec.update(ended=time.time(), returncode=code)
        _write(path / RECORD, rec)
        with self._lock:
            self._procs.pop(run_id, None)

    def cancel(self, run_id: str) -> dict[str, Any]:
        path = self.job_dir(run_id)
        with self._lock:
            proc = self._procs.get(run_id)
        if proc is None or proc.poll() is not None:
            raise ConsoleError(f"run {run_id} is not running", status=409, code="run_not_running")
        rec = json.loads((path / RECORD).read_text(encoding="utf-8"))
        rec["status"] = "cancelled"
        _write(path / RECORD, rec)
        os.killpg(proc.pid, signal.SIGTERM)  # the worker and anything it started (e.g. torchrun)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return self.record(run_id)

    def close(self) -> None:
        """Stop the runs this console started (its own shutdown)."""
        with self._lock:
            procs = list(self._procs.items())
        for run_id, proc in procs:
            if proc.poll() is None:
                self.cancel(run_id)


def read_events(path: Path) -> list[dict[str, Any]]:
    events = path / EVENTS
    if not events.is_file():
        return []
    out = []
    for line in events.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written right now
    return out


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
