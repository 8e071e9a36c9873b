"""The ladder on two public document sets with human questions, beside the RAG script a user would write.

Sets (read from ../shared/data, never copied into the project):
  cmrc2018  Chinese Wikipedia passages, human questions (CMRC 2018 trial)
  squad2    English Wikipedia paragraphs ("Normans", "Rhine"), human questions, part of them unanswerable

For each set, in one run, on the embedded SmolLM2-135M-Instruct on this CPU:
  naive     the script a careful user writes in 40 lines: fixed 500-character chunks, BM25 (bm25s; jieba words for
            Chinese), top 3 passages in a "answer from the context" prompt, the same base model, greedy decoding
            through plain Transformers ``generate``;
  rungs     `verticalize run` with only the documents, the test set and the base named: every other key at its
            shipped default (prompt · rag · peft · peft+rag).
Both are scored by the same metric code: answerable F1/EM, refusal rate on unanswerable questions and false-refusal
rate on answerable ones. The test questions are a seeded sample (``--questions``), the same for both sides.

    .venv/bin/python bench/ladder_public.py                    # both sets
    .venv/bin/python bench/ladder_public.py --sets squad2 --questions 40

Writes bench/results/ladder_public.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from verticalize.answering import PromptStyle, focus, is_refusal  # noqa: E402
from verticalize.artifacts import RunDir, library_versions, read_jsonl, write_json  # noqa: E402
from verticalize.config import load_config  # noqa: E402
from verticalize.evaluate.metrics import exact_match, token_f1  # noqa: E402
from verticalize.pipeline import run_pipeline  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = {"cmrc2018": DATA / "cmrc2018" / "cmrc2018_trial.json",
        "squad2": DATA / "squad2" / "squad2_dev_normans_rhine.json"}
RESULTS = ROOT / "bench" / "results" / "ladder_public.json"
NAIVE = {"chunk_chars": 500, "top_k": 3, "retriever": "bm25s (jieba words for Chinese)", "max_new_tokens": 32,
         "decoding": "greedy", "prompt": "system: answer from the context; user: Context + Question"}


# --------------------------------------------------------------------------------------------- inputs
def write_documents(squad: dict[str, Any], docs_dir: Path) -> int:
    if docs_dir.resolve().is_relative_to(ROOT):
        raise SystemExit(f"{docs_dir} is inside the repository; the data sets stay outside it")
    docs_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    for a_i, article in enumerate(squad["data"]):
        title = str(article.get("title") or "").strip()
        for p_i, para in enumerate(article.get("paragraphs") or []):
            text = f"{title}\n\n{para['context'].strip()}\n" if title else para["context"].strip() + "\n"
            target = docs_dir / f"{a_i:04d}_{p_i:02d}.txt"
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
            n += 1
    return n


def sample_questions(squad: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample; for a set with unanswerable questions, half of each kind (as far as they go)."""
    rows = []
    for article in squad["data"]:
        for para in article.get("paragraphs") or []:
            for qa in para.get("qas") or []:
                answers = list(dict.fromkeys(a["text"].strip() for a in qa.get("answers") or [] if a["text"].strip()))
                impossible = bool(qa.get("is_impossible"))
                if qa.get("question", "").strip() and (answers or impossible):
                    rows.append({"id": qa["id"], "question": qa["question"].strip(),
                                 "answer": [] if impossible else answers, "answerable": not impossible})
    rng = random.Random(seed)
    rng.shuffle(rows)
    unanswerable = [r for r in rows if not r["answerable"]]
    if not unanswerable:
        return rows[:n]
    half = min(n // 2, len(unanswerable))
    return [r for r in rows if r["answerable"]][: n - half] + unanswerable[:half]


# --------------------------------------------------------------------------------------------- the naive script
def naive_rag(squad: dict[str, Any], questions: list[dict[str, Any]], model_cfg: Any) -> list[str]:
    """What a user writes without verticalize (kept in the shape of such a script on purpose)."""
    import bm25s
    import jieba
    import torch

    from verticalize.models import load_base

    chunks = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            text = para["context"]
            chunks += [text[i:i + NAIVE["chunk_chars"]] for i in range(0, len(text), NAIVE["chunk_chars"])]
    zh = any("\u4e00" <= ch <= "\u9fff" for ch in chunks[0])
    split = (lambda t: " ".join(jieba.lcut(t))) if zh else (lambda t: t)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([split(c) for c in chunks], stopwords=None if zh else "en", show_progress=False),
                    show_progress=False)
    model, tok = load_base(model_cfg)
    tok.padding_side = "left"
    answers = []
    for q in questions:
        ids, _ = retriever.retrieve(bm25s.tokenize([split(q["question"])], stopwords=None if zh else "en",
                                                   show_progress=False), k=NAIVE["top_k"], show_progress=False)
        context = "\n\n".join(chunks[i] for i in ids[0])
        messages = [{"role": "system", "content": "Answer the question from the context. Be brief."},
                    {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {q['question']}"}]
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=NAIVE["max_new_tokens"], do_sample=False)
        answers.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def answer_shown(rows: list[dict[str, Any]], questions: list[dict[str, Any]], style: PromptStyle) -> float:
    """Share of answerable questions whose reference appears in the passage windows the model was shown (the
    retrieval figure that matters to a reader: answer-in-top-k counts whole chunks)."""
    by_id = {r["id"]: r for r in rows}
    hits = []
    for q in questions:
        if q["answerable"]:
            shown = " ".join(focus(t, q["question"], style.passage_tokens) for t in by_id[q["id"]].get("context", []))
            hits.append(any(a in shown for a in q["answer"]))
    return sum(hits) / len(hits) if hits else float("nan")


def score(predictions: list[str], questions: list[dict[str, Any]], refused: list[bool] | None = None) -> dict:
    refused = refused if refused is not None else [is_refusal(p) for p in predictions]
    ans = [(p, q, r) for p, q, r in zip(predictions, questions, refused) if q["answerable"]]
    una = [r for q, r in zip(questions, refused) if not q["answerable"]]
    f1 = [0.0 if r else token_f1(p, q["answer"]) for p, q, r in ans]
    em = [0.0 if r else exact_match(p, q["answer"]) for p, q, r in ans]
    return {"f1": sum(f1) / len(f1) if f1 else None, "exact_match": sum(em) / len(em) if em else None,
            "refusal_rate": sum(una) / len(una) if una else None,
            "false_refusal_rate": sum(r for _, _, r in ans) / len(ans) if ans else None,
            "n_answerable": len(ans), "n_unanswerable": len(una)}


# --------------------------------------------------------------------------------------------- one set
def run_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    squad = json.loads(SETS[name].read_text(encoding="utf-8"))
    work = args.work_dir / name
    docs = write_documents(squad, work / "docs")
    questions = sample_questions(squad, args.questions, args.seed)
    test_file = work / "test.jsonl"
    test_file.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    overrides = [f"project.run_dir={work / 'run'}", f"project.docs=[{work / 'docs'}]",
                 f"project.test_set={test_file}", "model.base=smollm2-135m-instruct", *args.set]
    cfg = load_config(None, overrides)

    t0 = time.perf_counter()
    result = run_pipeline(cfg, force=args.force, progress=lambda s, st: print(f"[{time.strftime('%H:%M:%S')}] "
                                                                              f"{name} {s}: {st}", flush=True))
    pipeline_s = time.perf_counter() - t0
    ladder = result.ladder or {}
    rungs = {}
    for rung in ladder.get("rungs", {}):
        rows = list(read_jsonl(RunDir(result.run_dir).predictions(rung)))
        by_id = {r["id"]: r for r in rows}
        preds = [by_id[q["id"]]["prediction"] for q in questions]
        m = ladder["rungs"][rung]
        rungs[rung] = {**score(preds, questions), "p50_latency_ms": m.get("p50_latency_ms"),
                       "answer_in_top_k": m.get("recall@k"), "training_time_s": m.get("training_time_s")}
        if rung.endswith("rag"):
            rungs[rung]["answer_in_shown_passages"] = answer_shown(rows, questions, PromptStyle.from_config(cfg))

    t1 = time.perf_counter()
    naive_preds = naive_rag(squad, questions, cfg.model)
    naive = {**score(naive_preds, questions), "seconds": round(time.perf_counter() - t1, 1), "settings": NAIVE}
    stages = {s.name: {"status": s.status, "seconds": round(s.seconds, 1)} for s in result.stages}
    data_manifest = json.loads(RunDir(result.run_dir).manifest("data").read_text(encoding="utf-8"))
    return {"documents": docs, "questions": len(questions), "naive": naive, "rungs": rungs,
            "retrieval": ladder.get("retrieval"), "stages": stages, "pipeline_seconds": round(pipeline_s, 1),
            "overrides": overrides, "data_counts": data_manifest.get("counts", {}).get("by_generator"),
            "context_forms": data_manifest.get("counts", {}).get("context_forms"),
            "naive_predictions": [{"id": q["id"], "prediction": p} for q, p in zip(questions, naive_preds)]}


def print_table(name: str, res: dict[str, Any]) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"\n{name}: {res['documents']} documents, {res['questions']} questions, pipeline {res['pipeline_seconds']}s")
    print(f"{'':<10} {'F1':>6} {'EM':>6} {'refusal':>8} {'false-ref':>9}")
    for label, m in [("naive", res["naive"]), *res["rungs"].items()]:
        print(f"{label:<10} {fmt(m['f1']):>6} {fmt(m['exact_match']):>6} {fmt(m['refusal_rate']):>8} "
              f"{fmt(m['false_refusal_rate']):>9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/ladder-public"))
    ap.add_argument("--set", action="append", default=[], help="extra config override (kept in the result)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    out: dict[str, Any] = {"benchmark": "ladder_public", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                           "versions": library_versions(), "sets": {}}
    for name in args.sets:
        if not SETS[name].is_file():
            raise SystemExit(f"{SETS[name]} not found (see ../shared/data)")
        out["sets"][name] = run_set(name, args)
        print_table(name, out["sets"][name])
        write_json(args.out, out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
