"""The ladder: the same test set answered by each route (prompt, rag, peft, peft+rag, full), scored side by side.

Writes RUN/eval/ladder.json (task, test set, per-rung metrics, gates, recommendation), one
RUN/eval/predictions_<rung>.jsonl per rung and the stage manifest.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from verticalize.answering import DEFAULT_REFUSAL, PromptStyle, is_refusal, language_of
from verticalize.artifacts import (TRAIN_SECONDS, RunDir, TrainedAdapter, file_fingerprint, final_adapter,
                                   read_adapters, write_json, write_jsonl, write_manifest)
from verticalize.config import Config, ConfigError, EvalConfig
from verticalize.evaluate import gates as gates_mod
from verticalize.evaluate.forgetting import load_probes, probe_conversations, score_answers
from verticalize.evaluate.generation import LadderEngines, generate_answers
from verticalize.evaluate.judge import judge_rung
from verticalize.evaluate.metrics import (METRICS, classification_report, dir_size_bytes, mean_reciprocal_rank,
                                          percentile, recall_at_k, tokens_per_second)
from verticalize.evaluate.prompts import build_conversation, few_shot_examples, fit_passages, map_to_label
from verticalize.evaluate.testsets import TestExample, TestSet, load_test_set
from verticalize.kb import open_kb
from verticalize.openai_client import TeacherClient
from verticalize.rungs import FULL, PROMPT, Rung, is_rung
from verticalize.text import answer_key

KNOWN_RUNGS = gates_mod.COST_ORDER
QA_METRICS = [m.name for m in METRICS.values() if m.kind == "qa"]


def evaluate_run(cfg: Config, run: RunDir, test_set: Path | None = None, out_dir: Path | None = None) -> dict[str, Any]:
    """Answer the test set with every configured rung, score, gate, recommend; returns the ladder dict.

    With ``out_dir``, a side ladder (e.g. on the feedback questions an iteration held out of training): its
    ladder.json and predictions go there and the run's own eval stage is left untouched (no manifest, no
    forgetting probe — the run's own ladder has it)."""
    unknown = [r for r in cfg.eval.rungs if not is_rung(r)]
    if unknown:
        raise ConfigError(f"eval.rungs: unknown rung(s) {', '.join(unknown)}; rungs are {', '.join(KNOWN_RUNGS)}")
    ts = load_test_set(run, test_set, cfg.project.test_set, cfg.eval.max_examples)
    task = ts.task
    labels = _label_set(run, ts, cfg) if task == "classification" else []
    trained_adapters = read_adapters(run)  # the final PEFT adapter and the final full fine-tune, with lineages
    adapter, full = final_adapter(trained_adapters), final_adapter(trained_adapters, full=True)
    wanted = list(cfg.eval.rungs)
    if full is not None and FULL.name not in wanted and wanted == list(EvalConfig().rungs):
        wanted.append(FULL.name)  # a full fine-tune was trained: the default ladder measures it too
    kb, kb_note = _open_kb(run) if any(Rung.parse(r).uses_knowledge_base for r in wanted) else (None, None)
    rungs, skipped = _available_rungs(wanted, adapter, full, kb, kb_note)
    eval_dir = out_dir if out_dir is not None else run.ensure("eval")
    eval_dir.mkdir(parents=True, exist_ok=True)
    judge = (TeacherClient.from_config(cfg.data.teacher, cache_dir=eval_dir / "judge_cache")
             if cfg.eval.judge and rungs else None)  # config errors before any generation
    retrieval = _retrieve_all(kb, ts.examples, cfg.kb.top_k) if kb is not None else None
    few_shot = few_shot_examples(run.dataset_split("train"), cfg.eval.few_shot, task, cfg.project.seed)

    models = LadderEngines(cfg, adapter if any(Rung.parse(r).uses_adapter for r in rungs) else None,
                          full if any(Rung.parse(r).uses_full_model for r in rungs) else None,
                          run.engine_cache) if rungs else None
    results: dict[str, dict[str, Any]] = {}
    all_rows: dict[str, list[dict[str, Any]]] = {}
    try:
        for rung in rungs:
            r = Rung.parse(rung)
            trained = adapter if r.uses_adapter else full if r.uses_full_model else None
            all_rows[rung], results[rung] = _answer_rung(cfg, models, rung, ts, few_shot, retrieval, labels, trained)
        if models is not None and cfg.eval.general_probe and out_dir is None:
            _forgetting_probe(cfg, models, results, run.general_probe)
    finally:
        if models is not None:
            models.close()  # the batch workers end and the weights can be freed before the judge and the report
    if judge is not None:
        _run_judge(judge, rungs, results, all_rows)
    for rung, rows in all_rows.items():
        write_jsonl(eval_dir / run.predictions(rung).name, rows)

    gate_results = gates_mod.check_gates(results, cfg.requirements.gates)
    ladder = {
        "task": task,
        "test_set": {"kind": ts.kind, "path": ts.path, "n": len(ts.examples), "unanswerable": ts.n_unanswerable,
                     "refused": ts.refused},
        "rungs": results,
        "skipped": skipped,
        "gates": gate_results,
        "recommendation": gates_mod.recommend(results, gate_results, task),
        "cost_order": list(KNOWN_RUNGS),
        "retrieval": _retrieval_summary(retrieval, cfg.kb.top_k),
        "labels": labels,
        "settings": {"few_shot": len(few_shot), "max_new_tokens": cfg.eval.max_new_tokens,
                     "batch_size": cfg.eval.batch_size, "top_k": cfg.kb.top_k, "base": cfg.model.base,
                     "adapter": adapter.name if adapter else None,
                     "adapter_lineage": [a.name for a in adapter.lineage] if adapter else [],
                     "base_form": models.base_form.as_dict() if models and models.base_form else None,
                     "engine": models.choice if models else None},
    }
    write_json(eval_dir / run.ladder.name, _finite(ladder))
    if out_dir is not None:
        return ladder
    write_manifest(eval_dir, "eval", inputs=_inputs(run, ts, adapter),
                   config={"eval": cfg.eval.model_dump(mode="json"), "kb.top_k": cfg.kb.top_k,
                           "requirements": cfg.requirements.model_dump(mode="json"),
                           "system_prompt": cfg.project.system_prompt, "base": cfg.model.base},
                   counts={"examples": len(ts.examples), "unanswerable": ts.n_unanswerable,
                           "refused": len(ts.refused), "rungs": len(results),
                           "skipped": len(skipped)})
    return ladder


def _answer_rung(cfg: Config, models: LadderEngines, rung: str, ts: TestSet, few_shot: list[tuple[str, str]],
                 retrieval: dict[str, Any] | None, labels: list[str],
                 trained: TrainedAdapter | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One rung: build its prompts, generate, score. Returns (prediction rows, metrics)."""
    budget = max(8, cfg.model.max_seq_len - cfg.eval.max_new_tokens)
    style = PromptStyle.from_config(cfg)
    uses_kb = Rung.parse(rung).uses_knowledge_base
    convs, trimmed = [], []
    for i, ex in enumerate(ts.examples):
        hits = retrieval["hits"][i] if retrieval and uses_kb else ()

        def make(h: Sequence[Any], q: str = ex.question) -> list[dict[str, str]]:
            return build_conversation(rung, q, style, few_shot=few_shot, hits=h, labels=labels)

        conv, n = fit_passages(make, hits, models.count_tokens, budget) if hits else (make(()), 0)
        convs.append(conv)
        trimmed.append(n)
    engine, model_name = models.for_rung(rung)
    gens = generate_answers(engine, model_name, convs, max_new_tokens=cfg.eval.max_new_tokens,
                            batch_size=cfg.eval.batch_size, label=f"eval {rung}")
    rows = _prediction_rows(rung, ts.examples, gens, retrieval, labels, style)
    for row, n in zip(rows, trimmed):
        if n:
            row["context_trimmed"] = n  # passages dropped or shortened to fit model.max_seq_len
    metrics = _rung_metrics(rung, rows, gens, ts.task, labels, retrieval, trained)
    if uses_kb:
        metrics["context_trimmed_share"] = sum(1 for n in trimmed if n) / len(trimmed) if trimmed else 0.0
    return rows, metrics


def _forgetting_probe(cfg: Config, models: LadderEngines, results: dict[str, dict[str, Any]],
                      out: Path) -> None:
    """The general-skill probe on each model the rungs use (evaluate/forgetting.py): ``general_score`` per rung,
    ``general_regression`` = the base's score − the rung's model's score. Answers go to eval/general_probe.jsonl."""
    probes = load_probes()
    convs = probe_conversations(probes)
    scores: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for rung in [PROMPT.name, *results]:
        engine, model_name = models.for_rung(rung)
        if model_name not in scores:
            gens = generate_answers(engine, model_name, convs, max_new_tokens=cfg.eval.max_new_tokens,
                                    batch_size=cfg.eval.batch_size, label=f"general probe {model_name}")
            scores[model_name] = score_answers(probes, [g.text for g in gens])
            rows += [{"model": model_name, **r} for r in scores[model_name]["rows"]]
    base = scores[models.for_rung(PROMPT.name)[1]]["general_score"]
    for rung, metrics in results.items():
        s = scores[models.for_rung(rung)[1]]
        metrics["general_score"] = s["general_score"]
        metrics["general_regression"] = base - s["general_score"]
        metrics["general_by_kind"] = s["by_kind"]
    write_jsonl(out, rows)


# --------------------------------------------------------------------------------------------- inputs
def _available_rungs(wanted: Sequence[str], adapter: TrainedAdapter | None, full: TrainedAdapter | None, kb: Any,
                     kb_note: str | None) -> tuple[list[str], dict[str, str]]:
    rungs, skipped = [], {}
    for rung in sorted(dict.fromkeys(wanted), key=KNOWN_RUNGS.index):
        r = Rung.parse(rung)
        if r.uses_adapter and adapter is None:
            skipped[rung] = "no trained PEFT adapter under RUN/train/adapters/ (run `verticalize train`)"
        elif r.uses_full_model and full is None:
            skipped[rung] = "no full fine-tune (train.method=full) under RUN/train/adapters/"
        elif r.uses_knowledge_base and kb is None:
            skipped[rung] = kb_note or "no knowledge base"
        else:
            rungs.append(rung)
    return rungs, skipped


def _open_kb(run: RunDir) -> tuple[Any, str | None]:
    if not run.manifest("kb").is_file():
        return None, f"no knowledge base at {run.kb_dir} (run `verticalize kb build`)"
    try:
        return open_kb(run.kb_dir), None
    except (OSError, ValueError) as e:
        return None, f"knowledge base at {run.kb_dir} cannot be opened: {e}"


def _label_set(run: RunDir, ts: TestSet, cfg: Config) -> list[str]:
    path = run.labels
    labels: list[str] = []
    if path.is_file():
        obj = json.loads(path.read_text(encoding="utf-8"))
        labels = obj.get("labels", []) if isinstance(obj, dict) else list(obj)
    labels = labels or list(cfg.data.labels)
    return [str(l) for l in labels] or sorted({e.label for e in ts.examples if e.label})


def _inputs(run: RunDir, ts: TestSet, adapter: TrainedAdapter | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {"test_set": ts.path, "test_set_fingerprint": file_fingerprint(ts.path)}
    if adapter is not None:
        inputs["adapter"] = str(adapter.path)
        inputs["adapter_fingerprint"] = file_fingerprint(adapter.path)
    if run.manifest("kb").is_file():
        inputs["kb_fingerprint"] = file_fingerprint(run.manifest("kb"))
    return inputs


# --------------------------------------------------------------------------------------------- retrieval
def _retrieve_all(kb: Any, examples: Sequence[TestExample], k: int) -> dict[str, Any]:
    hits, seconds = [], []
    if examples:  # the first search loads the segmenter/index; keep that one-off cost out of the latencies
        kb.search(examples[0].question, k)
    for ex in examples:
        t0 = time.perf_counter()
        hits.append(kb.search(ex.question, k))
        seconds.append(time.perf_counter() - t0)
    return {"hits": hits, "seconds": seconds, **_answerable_retrieval_scores(examples, hits, k)}


def _retrieval_scores(examples: Sequence[TestExample], hits: Sequence[Sequence[Any]], k: int) -> dict[str, Any]:
    """recall@k and MRR against the most precise gold the test set has: chunk ids, else document ids, else
    (human test sets) whether a retrieved chunk contains a reference answer."""
    if all(ex.chunk_ids for ex in examples):
        basis, ranked = "chunk", [[h.chunk_id for h in hs] for hs in hits]
        gold = [ex.chunk_ids for ex in examples]
    elif all(ex.doc_id for ex in examples):
        basis, ranked = "document", [[h.doc_id for h in hs] for hs in hits]
        gold = [[ex.doc_id] for ex in examples]
    else:
        basis, gold = "answer_in_passage", [["answer"] for _ in examples]
        ranked = [["answer" if _contains_answer(h.text, ex.references) else h.chunk_id for h in hs]
                  for ex, hs in zip(examples, hits)]
    return {"basis": basis, "recall@k": recall_at_k(ranked, gold, k), "mrr": mean_reciprocal_rank(ranked, gold, k)}


def _contains_answer(text: str, references: Sequence[str]) -> bool:
    passage = answer_key(text)
    return any((ref := answer_key(r)) and ref in passage for r in references)


def _retrieval_summary(retrieval: dict[str, Any] | None, k: int) -> dict[str, Any] | None:
    if retrieval is None:
        return None
    return {"k": k, "basis": retrieval["basis"], "recall@k": retrieval["recall@k"], "mrr": retrieval["mrr"],
            "p50_ms": percentile([s * 1000 for s in retrieval["seconds"]], 50)}


# --------------------------------------------------------------------------------------------- scoring
def _prediction_rows(rung: str, examples: Sequence[TestExample], gens: Sequence[Any],
                     retrieval: dict[str, Any] | None, labels: Sequence[str],
                     style: PromptStyle | None = None) -> list[dict[str, Any]]:
    """One row per answer. QA rows carry ``answerable`` and ``refused`` (the answer says the documents do not
    hold it, ``answering.is_refusal``); answerable rows get ``scores`` (all 0 when the model refused), and an
    unanswerable row's ``reference`` is the refusal phrase (what the judge compares against)."""
    rows = []
    uses_kb = retrieval is not None and Rung.parse(rung).uses_knowledge_base
    for i, (ex, gen) in enumerate(zip(examples, gens)):
        latency = gen.latency_s + (retrieval["seconds"][i] if uses_kb else 0.0)
        row: dict[str, Any] = {"id": ex.id, "question": ex.question,
                               "reference": ex.references if ex.answerable else [_refusal_phrase(ex.question, style)],
                               "prediction": gen.text, "latency_ms": round(latency * 1000, 2),
                               "new_tokens": gen.new_tokens, "answerable": ex.answerable,
                               "refused": is_refusal(gen.text, style)}
        if getattr(gen, "engine", None):  # which engine answered (the split engine)
            row["engine"] = gen.engine
        if labels:
            row["label"] = ex.label
            row["predicted_label"] = map_to_label(gen.text, labels)
            row["correct"] = row["predicted_label"] == ex.label
        elif ex.answerable:
            row["scores"] = ({m: 0.0 for m in QA_METRICS} if row["refused"] else
                             {m: METRICS[m].fn(gen.text, ex.references) for m in QA_METRICS})
        if uses_kb:
            hits = retrieval["hits"][i]
            row["retrieved"] = [{"chunk_id": h.chunk_id, "source": h.source, "score": round(float(h.score), 4)}
                                for h in hits]
            row["context"] = [h.text for h in hits]
        rows.append(row)
    return rows


def _rung_metrics(rung: str, rows: list[dict[str, Any]], gens: Sequence[Any], task: str, labels: Sequence[str],
                  retrieval: dict[str, Any] | None, adapter: TrainedAdapter | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if task == "classification":
        report = classification_report([r["label"] for r in rows], [r["predicted_label"] for r in rows], labels)
        out.update({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                    "per_class": report["per_class"], "confusion": report["confusion"]})
    else:
        out.update(_qa_metrics(rows))
    latencies = [r["latency_ms"] for r in rows]
    out.update({f"p{q}_latency_ms": percentile(latencies, q) for q in (50, 95, 99)})
    out["mean_latency_ms"] = sum(latencies) / len(latencies) if latencies else float("nan")
    # Each answer carries its batch's wall time, so generation time is the sum over batches, not answers.
    batch_seconds = sum({g.batch: g.latency_s for g in gens}.values())
    out["tokens_per_s"] = tokens_per_second(sum(g.new_tokens for g in gens), batch_seconds)
    out["mean_new_tokens"] = sum(g.new_tokens for g in gens) / len(gens) if gens else 0.0
    engines = [getattr(g, "engine", None) for g in gens]
    if any(engines):  # the split engine: how many answers each engine gave
        out["answered_by"] = dict(Counter(e for e in engines if e))
    if retrieval is not None and Rung.parse(rung).uses_knowledge_base:
        out["recall@k"], out["mrr"] = retrieval["recall@k"], retrieval["mrr"]
    out.update(_training_cost(adapter))
    return out


def _training_cost(adapter: TrainedAdapter | None) -> dict[str, Any]:
    if adapter is None:
        return {"trainable_params": 0, "adapter_bytes": 0, "training_time_s": 0.0}
    trainable = int(adapter.meta.get("trainable_params") or 0)
    seconds = 0.0  # what it cost to reach this adapter: every stage of its lineage
    for a in adapter.lineage:
        value = (a.meta.get("metrics") or {}).get(TRAIN_SECONDS)
        seconds += float(value) if isinstance(value, (int, float)) else 0.0
    out = {"trainable_params": trainable, "adapter_bytes": dir_size_bytes(adapter.path),
           "training_time_s": seconds}
    total = adapter.meta.get("total_params")
    if total:
        out["trainable_share"] = trainable / float(total)
    return out


def _run_judge(client: Any, rungs: list[str], results: dict[str, dict[str, Any]],
               all_rows: dict[str, list[dict[str, Any]]]) -> None:
    """Judge scores for every rung, and each rung's win rate against the cheapest rung (the baseline)."""
    baseline = rungs[0]
    for rung in rungs:
        results[rung].update(judge_rung(client, all_rows[rung], None if rung == baseline else all_rows[baseline]))


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON; they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------- unanswerable
def _refusal_phrase(question: str, style: PromptStyle | None) -> str:
    return style.refusal_for(question) if style is not None else DEFAULT_REFUSAL[language_of(question)]


def _qa_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The QA quality metrics over the *answerable* questions (a refusal there scores 0), plus
    refusal_rate (share of unanswerable questions answered with a refusal; None without any),
    false_refusal_rate (share of answerable questions answered with a refusal; None without any) and both counts."""
    answerable = [r for r in rows if r.get("answerable", True)]
    unanswerable = [r for r in rows if not r.get("answerable", True)]
    out: dict[str, Any] = {m: (sum(r["scores"][m] for r in answerable) / len(answerable) if answerable else None)
                           for m in QA_METRICS}
    out["refusal_rate"] = (sum(1 for r in unanswerable if r.get("refused")) / len(unanswerable)
                           if unanswerable else None)
    out["false_refusal_rate"] = (sum(1 for r in answerable if r.get("refused")) / len(answerable)
                                 if answerable else None)
    out["n_answerable"], out["n_unanswerable"] = len(answerable), len(unanswerable)
    return out


def _answerable_retrieval_scores(examples: Sequence[TestExample], hits: Sequence[Sequence[Any]],
                                 k: int) -> dict[str, Any]:
    """``_retrieval_scores`` over the answerable questions only: an unanswerable one has no gold passage, so it
    would count as a miss and, lacking chunk ids, push the whole set to the answer-in-passage basis."""
    kept = [(ex, hs) for ex, hs in zip(examples, hits) if ex.answerable]
    if not kept:
        return {"basis": "none (no answerable question)", "recall@k": float("nan"), "mrr": float("nan")}
    return _retrieval_scores([ex for ex, _ in kept], [hs for _, hs in kept], k)
