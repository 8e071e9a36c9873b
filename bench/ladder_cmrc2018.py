"""The evaluation ladder on CMRC 2018 (Chinese reading comprehension): prompt · rag · peft · peft+rag, one run.

The trial split's 256 Wikipedia passages become the documents and its 1,002 human-written questions the test set
(SQuAD JSON, passed as ``project.test_set``), so the whole verticalize path runs on real Chinese text:
ingest → BM25 knowledge base → rule-distilled dataset → LoRA on the embedded SmolLM2-135M-Instruct → ladder.
It is general-domain text, a control rather than a vertical domain: the question it answers is what retrieval and a
small LoRA each add on Chinese when the base model is tiny. The baseline a user would otherwise use — the base
model with a prompt — is the ladder's first rung, measured in the same run.

Figures: per rung EM, F1 and ROUGE-L (character tokens for CJK), latency p50/p99 per answer; the knowledge base's
recall@k / MRR on all questions (``verticalize.kb.evaluate_kb``, an answer span inside a retrieved chunk counts as
relevant); stage timings. Sized for ~25 minutes on 2 busy CPU cores.

    .venv/bin/python bench/ladder_cmrc2018.py                         # the defaults below
    .venv/bin/python bench/ladder_cmrc2018.py --max-steps 60 --max-examples 20   # a quicker look

The passages are written to a work directory outside the repository (default /tmp/cmrc-docs) and the run goes to
/tmp/cmrc-run; the data set itself is never copied into the project. A rerun reuses cached stages (``--force``
redoes them). Prints the table and writes bench/results/ladder_cmrc2018.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from verticalize.artifacts import library_versions, write_json  # noqa: E402
from verticalize.config import GateConfig, load_config  # noqa: E402
from verticalize.kb import evaluate_kb  # noqa: E402
from verticalize.pipeline import run_pipeline  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cmrc2018" / "cmrc2018_trial.json"
RESULTS = ROOT / "bench" / "results" / "ladder_cmrc2018.json"
# Short on purpose: it is prepended to every training and evaluation sequence (~1.6 SmolLM2 tokens per character).
SYSTEM_PROMPT = "用原文中的词语简短回答。"
KB_KS = (1, 2, 3, 5, 10, 20)


# --------------------------------------------------------------------------------------------- documents
def write_passages(squad_path: Path, docs_dir: Path) -> dict[str, int]:
    """One .txt per passage (title line, blank line, passage) in ``docs_dir``; returns counts."""
    data = json.loads(squad_path.read_text(encoding="utf-8"))
    if not (isinstance(data, dict) and isinstance(data.get("data"), list)):
        raise SystemExit(f"{squad_path}: expected SQuAD JSON with a top-level 'data' list")
    if docs_dir.resolve().is_relative_to(ROOT):
        raise SystemExit(f"--docs-dir {docs_dir} is inside the repository; the data set must stay outside it")
    docs_dir.mkdir(parents=True, exist_ok=True)
    passages = questions = 0
    for a_i, article in enumerate(data["data"]):
        title = str(article.get("title") or "").strip()
        for p_i, para in enumerate(article.get("paragraphs") or []):
            context = str(para.get("context") or "").strip()
            if not context:
                continue
            name = f"{a_i:04d}_{p_i:02d}_{para.get('id', 'p')}.txt"
            text = f"{title}\n\n{context}\n" if title else f"{context}\n"
            target = docs_dir / name
            # Unchanged files keep their mtime, so the pipeline's ingest cache stays valid across reruns.
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
            passages += 1
            questions += len(para.get("qas") or [])
    return {"passages": passages, "questions": questions}


# --------------------------------------------------------------------------------------------- config
def overrides_for(args: argparse.Namespace) -> list[str]:
    return [
        "project.name=cmrc2018-ladder",
        f"project.run_dir={args.run_dir}",
        f"project.docs=[{args.docs_dir}]",
        f"project.test_set={args.data}",
        f"project.system_prompt={SYSTEM_PROMPT}",
        "project.language=zh",
        "model.base=smollm2-135m-instruct",
        "model.max_seq_len=1024",
        # ~300 characters ≈ 480 SmolLM2 tokens per retrieved chunk: top_k chunks set the RAG prompt length.
        f"ingest.chunk_chars={args.chunk_chars}",
        "ingest.chunk_overlap=40",
        f"kb.top_k={args.top_k}",
        "data.generator=rules",
        "data.max_per_chunk=4",
        "data.cloze=true",
        # A small validation split: it is scored at step 0 and at the end, a real cost on a busy CPU.
        "data.split=[0.95, 0.05, 0.0]",
        "train.method=lora",
        "train.lora.r=16",
        "train.lora.alpha=32",
        "train.lora.dropout=0.05",
        "train.learning_rate=1.0e-3",
        f"train.max_steps={args.max_steps}",
        "train.batch_tokens=512",
        f"train.eval_every={max(args.max_steps, 1)}",
        "train.save_every=100",
        "eval.rungs=[prompt, rag, peft, peft+rag]",
        "eval.few_shot=1",
        f"eval.max_new_tokens={args.max_new_tokens}",
        f"eval.max_examples={args.max_examples}",
        "eval.batch_size=8",
    ]


GATES = [
    {"goal": "阅读理解准确率 (reading-comprehension F1)", "metric": "f1", "op": ">=", "threshold": 0.5},
    {"goal": "响应时延 (answer latency)", "metric": "p99_latency_ms", "op": "<", "threshold": 5000},
]


# --------------------------------------------------------------------------------------------- table
def ladder_rows(ladder: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for rung, m in ladder.get("rungs", {}).items():
        rows.append({"rung": rung, "exact_match": m.get("exact_match"), "f1": m.get("f1"),
                     "rouge_l": m.get("rouge_l"), "p50_latency_ms": m.get("p50_latency_ms"),
                     "p99_latency_ms": m.get("p99_latency_ms"), "tokens_per_s": m.get("tokens_per_s"),
                     "recall@k": m.get("recall@k"), "trainable_params": m.get("trainable_params")})
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], ladder: dict[str, Any], kb_eval: dict[str, Any],
                stages: list[dict[str, Any]]) -> None:
    n = ladder.get("test_set", {}).get("n")
    print(f"\nLadder on CMRC 2018 trial ({n} questions, SmolLM2-135M-Instruct + LoRA):")
    print(f"{'rung':<10} {'EM':>6} {'F1':>6} {'ROUGE-L':>8} {'p50 ms':>8} {'p99 ms':>8} {'tok/s':>7} {'R@k':>6}")
    for r in rows:
        print(f"{r['rung']:<10} {_fmt(r['exact_match'], '.3f'):>6} {_fmt(r['f1'], '.3f'):>6} "
              f"{_fmt(r['rouge_l'], '.3f'):>8} {_fmt(r['p50_latency_ms'], '.0f'):>8} "
              f"{_fmt(r['p99_latency_ms'], '.0f'):>8} {_fmt(r['tokens_per_s'], '.1f'):>7} "
              f"{_fmt(r['recall@k'], '.3f'):>6}")
    for rung, why in (ladder.get("skipped") or {}).items():
        print(f"{rung:<10} skipped: {why}")
    metrics = kb_eval.get("metrics", {})
    print(f"\nBM25 knowledge base on all {kb_eval.get('questions')} questions (answer span in chunk): "
          + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    rec = ladder.get("recommendation") or {}
    print(f"Recommendation: {json.dumps(rec, ensure_ascii=False)[:300]}")
    print("Stages: " + ", ".join(f"{s['name']} {s['status']} {s['seconds']:.0f}s" for s in stages))


# --------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA, help="CMRC 2018 SQuAD JSON")
    ap.add_argument("--docs-dir", type=Path, default=Path("/tmp/cmrc-docs"), help="where passages are written")
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/cmrc-run"), help="pipeline run directory")
    ap.add_argument("--max-steps", type=int, default=24)
    ap.add_argument("--max-examples", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--chunk-chars", type=int, default=300)
    ap.add_argument("--force", action="store_true", help="redo cached stages")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"CMRC 2018 file not found: {args.data} (see ../shared/data/cmrc2018/README.md)")
    args.data, args.docs_dir, args.run_dir = args.data.resolve(), args.docs_dir.resolve(), args.run_dir.resolve()

    corpus = write_passages(args.data, args.docs_dir)
    print(f"{corpus['passages']} passages written to {args.docs_dir}; {corpus['questions']} questions")
    overrides = overrides_for(args)
    cfg = load_config(None, overrides)
    cfg.requirements.gates = [GateConfig(**g) for g in GATES]

    started = time.perf_counter()
    result = run_pipeline(cfg, force=args.force,
                          progress=lambda stage, status: print(f"[{time.strftime('%H:%M:%S')}] {stage}: {status}",
                                                               flush=True))
    total = time.perf_counter() - started
    stages = [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 1), "note": s.note}
              for s in result.stages]
    ladder = result.ladder or {}

    t0 = time.perf_counter()
    kb_eval = evaluate_kb(result.run_dir / "kb", args.data, ks=KB_KS, match="span")
    kb_eval_s = time.perf_counter() - t0

    rows = ladder_rows(ladder)
    print_table(rows, ladder, kb_eval, stages)
    manifests = {name: _manifest(result.run_dir / name) for name in ("ingest", "kb", "data", "train")}
    write_json(args.out, {
        "benchmark": "ladder_cmrc2018",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_at_end": list(os.getloadavg())},
        "versions": library_versions(),
        "data": {"path": str(args.data), **corpus},
        "overrides": overrides,
        "gates": GATES,
        "ladder": rows,
        "test_set": ladder.get("test_set"),
        "skipped": ladder.get("skipped"),
        "recommendation": ladder.get("recommendation"),
        "gate_results": ladder.get("gates"),
        "ladder_retrieval": ladder.get("retrieval"),
        "kb_eval": {"questions": kb_eval["questions"], "refused": kb_eval["refused"], "match": kb_eval["match"],
                    "metrics": kb_eval["metrics"], "seconds": round(kb_eval_s, 1)},
        "stages": stages,
        "total_seconds": round(total, 1),
        "counts": {name: (m or {}).get("counts") for name, m in manifests.items()},
        "run_dir": str(result.run_dir),
        "report": str(result.report) if result.report else None,
    })
    print(f"\nwrote {args.out} (pipeline {total:.0f}s; report {result.report})")


def _manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


if __name__ == "__main__":
    main()
