"""Ingest and knowledge-base benchmark: ingest throughput, BM25 build time and query latency at 100k chunks.

Compared in the same run with what a user would otherwise write:
  * index: ``rank_bm25.BM25Okapi`` on exactly the same tokens (jieba search terms) as bm25s;
  * query: rank_bm25 ``get_scores`` + top-k on the same query tokens, against bm25s scoring and against the full
    ``KnowledgeBase.search`` (query segmentation + scoring + reading the chunks from the on-disk store);
  * ingest: ``verticalize.ingest.ingest`` (readers, cleaning, PII redaction, chunking, near-dedup) against a naive
    read-and-slice into fixed 600-character windows.

The corpus is synthetic and deterministic (seeded): Chinese sentences drawn from jieba's own dictionary with its
word frequencies (a realistic Zipf distribution of terms), English sentences from a fixed domain word list with
Zipf weights, and mixed zh/en chunks (60/20/20). Queries are 4 content words of a random chunk, so each has a
known source chunk ("self-hit@10" checks both engines find it).

    .venv/bin/python bench/ingest_kb.py                    # 100k chunks (7 min on 2 cores shared ~6-fold)
    .venv/bin/python bench/ingest_kb.py --chunks 20000     # quicker

Prints a table with ratios and writes bench/results/ingest_kb.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from verticalize.artifacts import library_versions, write_json, write_jsonl  # noqa: E402
from verticalize.config import IngestConfig, KBConfig  # noqa: E402
from verticalize.kb import build_kb, open_kb  # noqa: E402
from verticalize.kb.text import STOPWORDS, analyze, analyze_many, search_terms  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest_kb.json"
MB = 1024 * 1024

EN_WORDS = """
account loan credit card fee annual interest rate payment transfer balance limit overdue penalty customer branch
service restart deploy cluster node database backup ledger invoice tariff customs declaration import export duty
clause article contract party obligation liability breach court appeal evidence risk score model approval review
policy compliance audit report quarter revenue margin cost budget forecast ticket incident alarm latency timeout
retry queue cache token session login password certificate network firewall gateway proxy kernel memory disk cpu
storage volume snapshot replica shard index query search document chunk vector embedding retrieval ranking
""".split()


# --------------------------------------------------------------------------------------------- synthetic corpus
def zh_vocabulary(limit: int = 30000) -> tuple[list[str], np.ndarray]:
    """The most frequent all-Han words of jieba's dictionary and their sampling probabilities."""
    import jieba

    words, freqs = [], []
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as fh:
        for line in fh:
            w, f, *_ = line.split()
            if len(w) <= 4 and all("\u4e00" <= ch <= "\u9fff" for ch in w):
                words.append(w)
                freqs.append(int(f))
    order = np.argsort(-np.asarray(freqs), kind="stable")[:limit]
    p = np.asarray(freqs, dtype=np.float64)[order]
    return [words[i] for i in order], p / p.sum()


def synthetic_chunks(n: int, seed: int = 0, mean_words: int = 70) -> list[dict]:
    rng = np.random.default_rng(seed)
    zh_words, zh_p = zh_vocabulary()
    en_p = 1.0 / np.arange(1, len(EN_WORDS) + 1)
    en_p /= en_p.sum()
    kinds = rng.choice(3, size=n, p=[0.6, 0.2, 0.2])  # 0 zh, 1 en, 2 mixed
    lengths = np.clip(rng.poisson(mean_words, size=n), 10, None)
    zh_draws = iter(rng.choice(len(zh_words), size=int(lengths.sum()), p=zh_p).tolist())
    en_draws = iter(rng.choice(len(EN_WORDS), size=int(lengths.sum()), p=en_p).tolist())
    chunks, start = [], 0
    for i in range(n):
        kind, length = int(kinds[i]), int(lengths[i])
        if kind == 1:
            words = [EN_WORDS[next(en_draws)] for _ in range(length // 2)]
            text = ". ".join(" ".join(words[j:j + 9]).capitalize() for j in range(0, len(words), 9)) + "."
        else:
            parts = []
            for j in range(length):
                if kind == 2 and j % 8 == 7:
                    parts.append(f" {EN_WORDS[next(en_draws)]} ")
                else:
                    parts.append(zh_words[next(zh_draws)])
                if j % 10 == 9:
                    parts.append("。" if j % 20 == 19 else "，")
            text = "".join(parts).strip() + "。"
        doc = i // 10  # ten consecutive chunks per document
        if i % 10 == 0:
            start = 0
        chunks.append({"id": f"doc{doc:06d}:{i % 10:04d}", "doc_id": f"doc{doc:06d}", "source": f"synthetic/{doc}.md",
                       "title": "", "text": text, "start": start, "lang": ("zh", "en", "mixed")[kind]})
        start += len(text)
    return chunks


def make_queries(chunks: list[dict], n: int, seed: int = 1) -> list[tuple[str, int]]:
    """(query string, index of its source chunk): 4 distinct content words of a random chunk."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        i = int(rng.integers(len(chunks)))
        words = sorted({t for t in analyze(chunks[i]["text"])[0] if t not in STOPWORDS and len(t) > 1})
        if len(words) < 4:
            continue
        picked = rng.choice(len(words), size=4, replace=False)
        out.append((" ".join(words[j] for j in picked), i))
    return out


# --------------------------------------------------------------------------------------------- measurements
def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3), "n": len(ms)}


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def bench_kb(args: argparse.Namespace, work: Path) -> dict:
    import bm25s
    from rank_bm25 import BM25Okapi

    log(f"generating {args.chunks} synthetic chunks")
    chunks = synthetic_chunks(args.chunks)
    chars = sum(len(c["text"]) for c in chunks)
    write_jsonl(work / "ingest" / "chunks.jsonl", chunks)

    # Segmentation (jieba) is most of the build; done once here and shared by both engines and build_kb.
    log("segmenting (jieba, parallel)")
    t = time.perf_counter()
    analyzed = analyze_many([c["text"] for c in chunks], args.workers)
    segment_s = time.perf_counter() - t
    tokens = [search_terms(a[0]) for a in analyzed]

    log("build_kb on the segmented chunks (index + save + quality score)")
    t = time.perf_counter()
    manifest = build_kb(work / "ingest" / "chunks.jsonl", work / "kb", KBConfig(index_workers=args.workers),
                        analyzed=analyzed)
    build_total = time.perf_counter() - t
    del analyzed
    index_bytes = sum(p.stat().st_size for p in (work / "kb").rglob("*") if p.is_file())

    log("bm25s vs rank_bm25 index build on the same tokens")
    t = time.perf_counter()  # as LocalBackend.build does it: terms -> ids in one pass, scipy CSC when available
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(w, len(vocab)) for w in doc] for doc in tokens]
    bm = bm25s.BM25(k1=1.5, b=0.75, csc_backend="auto")
    bm.index((ids, vocab), show_progress=False)
    bm25s_build = time.perf_counter() - t
    del ids
    t = time.perf_counter()
    okapi = BM25Okapi(tokens, k1=1.5, b=0.75)
    rank_build = time.perf_counter() - t
    del tokens

    queries = make_queries(chunks, args.queries)
    query_tokens = [search_terms(analyze(q)[0]) for q, _ in queries]

    log("opening the knowledge base from disk")
    t = time.perf_counter()
    kb = open_kb(work / "kb")
    open_s = time.perf_counter() - t

    log(f"{len(queries)} queries: KnowledgeBase.search and bm25s scoring")
    kb_lat, bm_lat, kb_self, bm_top1, bm_self = [], [], 0, [], []
    for (q, src), qt in zip(queries, query_tokens):
        t = time.perf_counter()
        hits = kb.search(q, 10)
        kb_lat.append(time.perf_counter() - t)
        kb_self += any(h.chunk_id == chunks[src]["id"] for h in hits)
        t = time.perf_counter()
        ids = [bm.vocab_dict[w] for w in qt if w in bm.vocab_dict]
        top = top_k(bm.get_scores_from_ids(ids), 10)
        bm_lat.append(time.perf_counter() - t)
        bm_top1.append(int(top[0]))
        bm_self.append(src in top.tolist())

    n_base = min(args.baseline_queries, len(queries))
    log(f"{n_base} queries: rank_bm25 get_scores")
    rb_lat, rb_self, agree = [], 0, 0
    for j in range(n_base):
        t = time.perf_counter()
        top = top_k(okapi.get_scores(query_tokens[j]), 10)
        rb_lat.append(time.perf_counter() - t)
        rb_self += queries[j][1] in top.tolist()
        agree += int(top[0]) == bm_top1[j]

    kb_q, bm_q, rb_q = percentiles(kb_lat), percentiles(bm_lat), percentiles(rb_lat)
    return {
        "corpus": {"chunks": len(chunks), "chars": chars, "avg_chars": round(chars / len(chunks), 1),
                   "index_terms": manifest["index"]["index_tokens"], "vocabulary": manifest["index"]["vocabulary"]},
        "build_kb": {"total_s": round(segment_s + build_total, 2),
                     "stages_s": {**manifest["timings_s"], "segment": round(segment_s, 2)},
                     "chunks_per_s": round(len(chunks) / (segment_s + build_total), 1),
                     "index_mb_on_disk": round(index_bytes / MB, 1),
                     "quality": {k: v for k, v in manifest["quality"].items() if k != "definition"}},
        "segmentation": {"s": round(segment_s, 2), "chars_per_s": round(chars / segment_s),
                         "workers": args.workers or "auto"},
        "index_build_same_tokens": {"bm25s_s": round(bm25s_build, 2), "rank_bm25_s": round(rank_build, 2),
                                    "speedup": round(rank_build / bm25s_build, 1)},
        "open_kb_s": round(open_s, 3),
        "query": {"kb_search": kb_q, "bm25s_scoring": bm_q, "rank_bm25_scoring": rb_q,
                  "p50_speedup_bm25s_vs_rank_bm25": round(rb_q["p50_ms"] / bm_q["p50_ms"], 1),
                  "p99_speedup_bm25s_vs_rank_bm25": round(rb_q["p99_ms"] / bm_q["p99_ms"], 1),
                  "p50_speedup_kb_search_vs_rank_bm25": round(rb_q["p50_ms"] / kb_q["p50_ms"], 1)},
        "quality_of_results": {"kb_self_hit_at_10": round(kb_self / len(queries), 4),
                               "bm25s_self_hit_at_10_same_queries": round(sum(bm_self[:n_base]) / n_base, 4),
                               "rank_bm25_self_hit_at_10": round(rb_self / n_base, 4),
                               "top1_agreement_bm25s_rank_bm25": round(agree / n_base, 4)},
    }


def bench_ingest(args: argparse.Namespace, work: Path) -> dict:
    try:
        from verticalize.ingest import ingest
    except ImportError as e:
        return {"skipped": f"verticalize.ingest not available ({e})"}
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    target = int(args.ingest_mb * MB)
    written = n_files = i = 0
    chunk_pool = synthetic_chunks(max(2000, int(target / 500)), seed=3)
    while written < target:
        paras = [chunk_pool[(i + j) % len(chunk_pool)]["text"] for j in range(int(rng.integers(20, 60)))]
        i += len(paras)
        body = f"# 第{n_files + 1}章 规则说明\n\n" + "\n\n".join(paras) + "\n"
        path = docs / f"doc_{n_files:05d}{'.md' if n_files % 2 else '.txt'}"
        path.write_text(body, encoding="utf-8")
        written += len(body.encode("utf-8"))
        n_files += 1
    mb = written / MB

    log(f"ingest: {n_files} files, {mb:.1f} MB")
    t = time.perf_counter()
    try:
        manifest = ingest([str(docs)], work / "run_ingest", IngestConfig())
    except Exception as e:  # the ingest package is young; a failure must not lose the kb figures
        log(f"ingest failed: {type(e).__name__}: {e}")
        return {"skipped": f"ingest failed: {type(e).__name__}: {str(e)[:300]}"}
    ingest_s = time.perf_counter() - t
    n_chunks = sum(1 for _ in open(work / "run_ingest" / "chunks.jsonl", encoding="utf-8"))

    log("naive baseline: read + fixed 600-char windows")
    t = time.perf_counter()
    rows = []
    for path in sorted(docs.iterdir()):
        text = path.read_text(encoding="utf-8")
        rows.extend({"id": f"{path.name}:{k}", "text": text[k:k + 600]} for k in range(0, len(text), 520))
    write_jsonl(work / "naive.jsonl", rows)
    naive_s = time.perf_counter() - t
    ok_files = sum(1 for f in manifest.get("files", []) if f.get("status") == "ok")
    return {"files": n_files, "files_ok": ok_files, "mb": round(mb, 2), "chunks": n_chunks,
            "ingest_s": round(ingest_s, 2), "mb_per_min": round(mb / ingest_s * 60, 2),
            "chunks_per_s": round(n_chunks / ingest_s, 1),
            "naive_s": round(naive_s, 3), "naive_mb_per_min": round(mb / naive_s * 60, 1),
            "naive_chunks": len(rows), "slowdown_vs_naive": round(ingest_s / naive_s, 1)}


# --------------------------------------------------------------------------------------------- report
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    kb = res["kb"]
    t = Table(title=f"knowledge base, {kb['corpus']['chunks']} chunks (avg {kb['corpus']['avg_chars']} chars)")
    for col in ("measure", "verticalize (bm25s)", "rank_bm25", "ratio"):
        t.add_column(col, justify="right" if col != "measure" else "left")
    ib, q = kb["index_build_same_tokens"], kb["query"]
    t.add_row("index build, same tokens (s)", f"{ib['bm25s_s']}", f"{ib['rank_bm25_s']}", f"{ib['speedup']}x")
    t.add_row("query scoring p50 (ms)", f"{q['bm25s_scoring']['p50_ms']}", f"{q['rank_bm25_scoring']['p50_ms']}",
              f"{q['p50_speedup_bm25s_vs_rank_bm25']}x")
    t.add_row("query scoring p99 (ms)", f"{q['bm25s_scoring']['p99_ms']}", f"{q['rank_bm25_scoring']['p99_ms']}",
              f"{q['p99_speedup_bm25s_vs_rank_bm25']}x")
    t.add_row("KnowledgeBase.search p50 / p99 (ms)", f"{q['kb_search']['p50_ms']} / {q['kb_search']['p99_ms']}",
              "", f"{q['p50_speedup_kb_search_vs_rank_bm25']}x (p50)")
    qr = kb["quality_of_results"]
    t.add_row("self-hit@10 (same queries)", f"{qr['bm25s_self_hit_at_10_same_queries']}",
              f"{qr['rank_bm25_self_hit_at_10']}", f"top-1 agree {qr['top1_agreement_bm25s_rank_bm25']}")
    b = kb["build_kb"]
    t.add_row("KB build incl. segmentation (s)", f"{b['total_s']} ({b['chunks_per_s']} chunks/s)", "", "")
    t.add_row("  of which segment / index / save / quality", " / ".join(
        str(b["stages_s"].get(k)) for k in ("segment", "index", "save", "quality")), "", "")
    t.add_row("open_kb (s) / index on disk (MB)", f"{kb['open_kb_s']} / {b['index_mb_on_disk']}", "", "")
    Console().print(t)
    ing = res["ingest"]
    if "skipped" in ing:
        Console().print(f"ingest: {ing['skipped']}")
        return
    t2 = Table(title=f"ingest, {ing['files']} files, {ing['mb']} MB")
    for col in ("measure", "verticalize ingest", "naive read+slice", "ratio"):
        t2.add_column(col, justify="right" if col != "measure" else "left")
    t2.add_row("MB/min", f"{ing['mb_per_min']}", f"{ing['naive_mb_per_min']}", f"{ing['slowdown_vs_naive']}x slower")
    t2.add_row("chunks / chunks/s", f"{ing['chunks']} / {ing['chunks_per_s']}", f"{ing['naive_chunks']}", "")
    Console().print(t2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--baseline-queries", type=int, default=200, help="rank_bm25 is slow: fewer queries")
    ap.add_argument("--ingest-mb", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=0, help="segmentation processes (0: one per core)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-kb-") as tmp:
        res = {"kb": bench_kb(args, Path(tmp)), "ingest": bench_ingest(args, Path(tmp))}
    res["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                      "loadavg_before": [round(x, 2) for x in load_before],
                      "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    res["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    res["versions"] = {**library_versions(), **_version("rank_bm25")}
    res["wall_s"] = round(time.perf_counter() - started, 1)
    res["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(args.out, res)
    print_table(res)
    print(f"wrote {args.out}")


def _version(name: str) -> dict[str, str]:
    from importlib import metadata

    try:
        return {name: metadata.version(name.replace("_", "-"))}
    except metadata.PackageNotFoundError:
        return {}


if __name__ == "__main__":
    main()
