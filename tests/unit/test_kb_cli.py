"""The kb commands through the real CLI app: build, search, stats, eval, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verticalize.cli import app

from test_kb_search import DOCS, chunk_rows, write_chunks

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    write_chunks(run / "ingest" / "chunks.jsonl", chunk_rows(), ["{broken"])
    return run


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_build_search_stats_eval(run_dir: Path, tmp_path: Path):
    r = invoke("kb", "build", "--run", str(run_dir), "--set", "kb.bm25_k1=1.2")
    assert r.exit_code == 0, r.output
    assert "indexed 6 chunks from 6 documents" in r.output and "refused 1 rows" in r.output
    manifest = json.loads((run_dir / "kb" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["bm25_k1"] == 1.2

    r = invoke("kb", "search", str(run_dir), "信用卡年费", "-k", "2")
    assert r.exit_code == 0, r.output
    assert "credit/card_fees.md" in r.output and "score" in r.output

    r = invoke("kb", "stats", str(run_dir))
    assert r.exit_code == 0, r.output
    assert "quality.score" in r.output and f"{manifest['quality']['score']:.4g}" in r.output

    r = invoke("kb", "stats", str(run_dir / "kb"), "--json")
    assert json.loads(r.stdout)["counts"]["refused"] == 1

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"question": q, "answer": DOCS[src][1][:8]}, ensure_ascii=False) + "\n"
                             for q, src in [("年费", "credit/card_fees.md"), ("restart payment", "ops/runbook.md")]),
                     encoding="utf-8")
    r = invoke("kb", "eval", str(run_dir), str(qfile), "--k", "1,3")
    assert r.exit_code == 0, r.output
    assert "recall@1" in r.output and "1.000" in r.output
    assert json.loads((run_dir / "kb" / "eval.json").read_text(encoding="utf-8"))["metrics"]["recall@3"] == 1.0


@pytest.mark.parametrize("args, message", [
    (["kb", "search", "{missing}", "q"], "no knowledge base at"),
    (["kb", "build", "--run", "{missing}"], "run `verticalize ingest` first"),
    (["kb", "build", "--run", "{missing}", "--set", "kb.bakend=x"], "did you mean kb.backend"),
    (["kb", "eval", "{run}", "{missing}/q.json"], "question file not found"),
    (["kb", "build", "--run", "{run}", "--strict"], "--strict: 1 row(s)"),
    (["kb", "eval", "{run}", "{run}/ingest/chunks.jsonl", "--k", "1,x"], "--k must be comma-separated"),
])
def test_bad_input_is_one_line_and_exit_2(run_dir: Path, tmp_path: Path, args: list[str], message: str):
    invoke("kb", "build", "--run", str(run_dir))
    args = [a.format(missing=tmp_path / "missing", run=run_dir) for a in args]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
