"""Route advisor: from a user's facts, which route from general to vertical model — and why.

The rules follow seed 003's table (表1) and its "optimal solution" section:
  prompt     no parameter change; lowest cost (inference only); building AI applications
  rag        no parameter change, external knowledge base; low cost (~30 % more inference energy)
  peft       1–5 % of parameters; medium cost (training ≈ 15–20 % of full fine-tuning); industry vertical models
  full       all parameters; high cost (≈ 50–70 % of the original training); complex industry models, 5000+
             high-quality labelled examples
  pretrain   build your own model; highest cost (hundreds of GPUs for months); unique data assets, a moat
"~80 % of industry scenarios are served by prompt engineering + RAG", start-ups should start with prompt + RAG,
solution providers take PEFT + a domain knowledge base, and PEFT is judged the best trade-off today. Seed 000 adds:
≥ 500 human-labelled seed samples for fine-tuning, PEFT for terminology/format, and P99 latency as a business gate.

Each route starts from a prior (prompt + RAG first, as the seed says) and every rule that fires adds or removes
points with a reason; measured ladder results (RUN/eval/ladder.json), when present, outweigh the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from verticalize.config import ConfigError
from verticalize.plan.devices import GPU_PROFILES
from verticalize.rungs import RUNG_NAMES

ROUTES = RUNG_NAMES + ("pretrain",)  # the ladder's rungs, cheapest first, then pre-training (never measured)
# Relative cost of each route (seed 003, 表1): used to break ties towards the cheaper route.
ROUTE_COST = {r: i for i, r in enumerate(ROUTES)}
PRIOR = {"prompt": 1.0, "rag": 1.5, "peft": 1.0, "peft+rag": 1.0, "full": -1.0, "pretrain": -3.0}
PRIOR_REASON = {
    "prompt": "cheapest route, inference only (seed 003: ~80 % of scenarios are served by prompt + RAG)",
    "rag": "low cost, ~30 % more inference energy (seed 003: ~80 % of scenarios are served by prompt + RAG)",
    "peft": "medium cost, training ≈ 15–20 % of full fine-tuning; seed 003's best trade-off today",
    "peft+rag": "PEFT + a domain knowledge base, seed 003's route for solution providers",
    "full": "high cost, ≈ 50–70 % of the original training; for complex domains with 5000+ labels",
    "pretrain": "highest cost, hundreds of GPUs for months; only for unique data assets",
}
QUALITY_METRICS = ("f1", "macro_f1", "accuracy", "exact_match", "rouge_l", "judge_score")
TOKENS_PER_PAGE = 500


class FactsError(ConfigError):
    """Facts the advisor cannot use; the message names the field."""


class Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["qa", "classification", "generation"] = Field("qa", description="What the model must do.")
    doc_tokens: int | None = Field(None, ge=0, description="Domain documents, in tokens.")
    doc_pages: int | None = Field(None, ge=0, description="Domain documents, in pages (≈500 tokens each).")
    labelled_examples: int = Field(0, ge=0, description="Human-labelled examples (question/answer or text/label).")
    compute: str = Field("cpu", description="none (API only), cpu, or NxPROFILE such as 1xa100-80g, 8xh100-80g.")
    latency_ms: float | None = Field(None, gt=0, description="P99 latency target per answer, in ms.")
    knowledge_changes_often: bool = Field(False, description="Whether the domain facts change often (weekly).")
    style_or_format: bool = Field(False, description="Whether the model must learn a style, format or terminology.")
    budget: Literal["low", "medium", "high"] = Field("medium", description="Money and time available.")
    model_params: float | None = Field(None, gt=0, description="Base model size in parameters (e.g. 7e9).")

    @property
    def tokens(self) -> int | None:
        """Document volume in tokens; None when the user did not say (the document rules then stay silent)."""
        if self.doc_tokens is not None:
            return self.doc_tokens
        return None if self.doc_pages is None else self.doc_pages * TOKENS_PER_PAGE


@dataclass
class RouteScore:
    route: str
    score: float
    reasons: list[str] = field(default_factory=list)

    def add(self, points: float, reason: str) -> None:
        self.score += points
        self.reasons.append(f"{points:+.1f} {reason}")


@dataclass
class Advice:
    route: str
    ranked: list[RouteScore]
    facts: dict[str, Any]
    ladder_used: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"route": self.route, "facts": self.facts, "ladder_used": self.ladder_used, "notes": self.notes,
                "ranked": [{"route": r.route, "score": round(r.score, 2), "reasons": r.reasons}
                           for r in self.ranked]}


def parse_facts(facts: dict[str, Any]) -> Facts:
    try:
        return Facts.model_validate(facts)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"unknown fact '{where}'; known facts: {', '.join(Facts.model_fields)}")
            else:
                lines.append(f"fact '{where}': {err['msg']} (got {err.get('input')!r})")
        raise FactsError("invalid facts: " + "; ".join(lines)) from None


def parse_compute(compute: str) -> tuple[str, int]:
    """'cpu' → ('cpu', 0); '8xh100-80g' → ('h100-80g', 8); 'a100-80g' → ('a100-80g', 1)."""
    c = compute.strip().lower()
    if c in ("none", "api", "cpu"):
        return c, 0
    count, _, kind = c.partition("x") if c[:1].isdigit() and "x" in c else ("1", "", c)
    if not count.isdigit() or not kind:
        raise FactsError(f"fact 'compute': expected none, cpu or NxPROFILE (e.g. 2xa100-80g), got {compute!r}")
    return kind, int(count)


# --------------------------------------------------------------------------------------------- rules
def _gpu_memory_gb(kind: str) -> float | None:
    matches = [p for name, p in GPU_PROFILES.items() if name.startswith(kind)]
    return matches[0].memory_bytes / 1e9 if matches else None


def _document_rules(tokens: int | None, s: dict[str, RouteScore]) -> None:
    if tokens is None:  # volume unknown: no document rule applies
        return
    if tokens == 0:
        for r in ("rag", "peft+rag"):
            s[r].add(-3.0, "no domain documents: nothing to retrieve")
    elif tokens <= 20_000:
        s["prompt"].add(1.5, f"{tokens:,} document tokens fit in the prompt itself")
        s["rag"].add(0.5, "a small document set is easy to index")
    else:
        s["rag"].add(1.0, f"{tokens:,} document tokens: too many for a prompt, right for a knowledge base")
        s["peft+rag"].add(1.0, "a document base to retrieve from and to distil training pairs from")
        s["prompt"].add(-1.0, "the domain knowledge does not fit in a prompt")


def _apply_rules(f: Facts, s: dict[str, RouteScore]) -> None:
    tokens = f.tokens
    if f.knowledge_changes_often:
        s["rag"].add(2.5, "knowledge changes often: retrieval reads the latest documents, no retraining")
        s["peft+rag"].add(1.5, "knowledge changes often: retrieval keeps facts current while PEFT sets style")
        s["peft"].add(-1.5, "knowledge changes often: facts learnt into weights go stale between trainings")
        s["full"].add(-2.0, "knowledge changes often: each change needs a full retraining")
        s["pretrain"].add(-2.0, "knowledge changes often: pre-training cannot follow frequent changes")
    _document_rules(tokens, s)
    n = f.labelled_examples
    distillable = (tokens or 0) >= 1_000_000
    if n < 100:
        pts = -1.0 if distillable else -2.5
        why = (" (question/answer pairs can still be distilled from the documents)" if distillable else "")
        s["peft"].add(pts, f"only {n} labelled examples{why}")
        s["peft+rag"].add(pts / 2, f"only {n} labelled examples")
        s["full"].add(-3.0, "full fine-tuning needs thousands of labelled examples (seed 003: 5000+)")
    elif n < 500:
        s["peft"].add(-0.5, f"{n} labelled examples: below the 500 seed samples seed 000 asks for")
        s["full"].add(-2.5, "full fine-tuning needs 5000+ high-quality labelled examples (seed 003)")
        s["prompt"].add(0.5, f"{n} examples are enough for few-shot prompts and a test set")
    elif n < 5000:
        s["peft"].add(1.5, f"{n} labelled examples: enough for PEFT (≥ 500, seed 000)")
        s["peft+rag"].add(1.5, f"{n} labelled examples: enough for PEFT (≥ 500, seed 000)")
        s["full"].add(-1.0, "below the 5000+ labelled examples seed 003 asks for full fine-tuning")
    else:
        s["peft"].add(1.5, f"{n} labelled examples: plenty for PEFT")
        s["peft+rag"].add(1.0, f"{n} labelled examples")
        s["full"].add(2.0, f"{n} labelled examples: enough for full fine-tuning (seed 003: 5000+)")
    if f.task == "classification":
        s["peft"].add(2.0, "classification: a small adapter learns the label mapping (seed 000: ticket "
                           "classification with prefix tuning, +23 % accuracy)")
        s["rag"].add(-1.0, "classification: retrieved passages rarely decide a label")
        s["peft+rag"].add(-0.5, "classification: retrieval adds latency for little gain")
    elif f.task == "qa":
        s["rag"].add(0.5, "question answering over documents: retrieval grounds answers in sources")
        s["peft+rag"].add(0.5, "question answering over documents")
    if f.style_or_format:
        s["peft"].add(2.0, "style, format or terminology are learnt best into weights (PEFT)")
        s["peft+rag"].add(1.5, "style/terminology from PEFT, facts from retrieval")
        s["prompt"].add(0.5, "simple formats can be set by prompt templates")
    if f.latency_ms is not None and f.latency_ms < 500:
        s["rag"].add(-1.0, f"P99 target {f.latency_ms:g} ms: retrieval and a longer prompt add latency")
        s["peft+rag"].add(-1.0, f"P99 target {f.latency_ms:g} ms: retrieval adds latency")
        s["prompt"].add(-0.5, f"P99 target {f.latency_ms:g} ms: few-shot prompts are long")
        s["peft"].add(1.0, f"P99 target {f.latency_ms:g} ms: knowledge in weights keeps prompts short")


def _apply_compute(f: Facts, s: dict[str, RouteScore], notes: list[str]) -> None:
    kind, count = parse_compute(f.compute)
    if kind not in ("none", "cpu") and _gpu_memory_gb(kind) is None:
        raise FactsError(f"fact 'compute': unknown GPU '{kind}'; use none, cpu or NxPROFILE with PROFILE one of "
                         f"{', '.join(GPU_PROFILES)} (e.g. 2xa100-80g)")
    if kind == "none":
        for r in ("peft", "peft+rag", "full", "pretrain"):
            s[r].add(-4.0, "no compute for training (API only)")
        return
    if kind == "cpu":
        s["full"].add(-3.0, "CPU only: full fine-tuning of an LLM is impractical")
        s["pretrain"].add(-5.0, "CPU only: pre-training needs hundreds of GPUs for months (seed 003)")
        small = f.model_params is not None and f.model_params <= 2e9
        s["peft"].add(0.0 if small else -1.0, "CPU only: PEFT is possible for small models" if small else
                      "CPU only: PEFT of a multi-billion model is slow without a GPU")
        s["peft+rag"].add(0.0 if small else -1.0, "CPU only" if small else "CPU only: slow PEFT training")
        return
    mem = _gpu_memory_gb(kind) or 0.0
    if f.model_params:
        # Full fine-tuning needs ~16 bytes per parameter of states (ZeRO-3 shards them over the GPUs).
        need = 16 * f.model_params / 1e9 * 1.2
        if need > mem * count:
            s["full"].add(-3.0, f"full fine-tuning needs ≈{need:.0f} GB of states, {count}×{kind} has "
                                f"{mem * count:.0f} GB")
        else:
            s["full"].add(0.5, f"{count}×{kind} holds full fine-tuning states (≈{need:.0f} GB)")
        if 2.5 * f.model_params / 1e9 > mem:
            s["peft"].add(-0.5, f"the model needs QLoRA (4-bit) to fit one {kind}")
    if count >= 64 and f.budget == "high" and (f.tokens or 0) >= 10_000_000_000:
        s["pretrain"].add(8.0, f"{f.tokens:,} tokens of own data, {count} GPUs and a high budget: a unique data "
                               "asset can justify pre-training (seed 003)")
    else:
        s["pretrain"].add(-2.0, "pre-training needs ≥ 10B tokens of own data, hundreds of GPUs and a high budget")


def _apply_budget(f: Facts, s: dict[str, RouteScore]) -> None:
    if f.budget == "low":
        s["prompt"].add(1.0, "low budget: prompt engineering costs only inference (seed 003: start-ups start with "
                             "prompt + RAG)")
        s["rag"].add(1.0, "low budget: RAG adds only ~30 % inference energy")
        s["full"].add(-2.0, "low budget: full fine-tuning costs ≈ 50–70 % of the original training")
        s["pretrain"].add(-3.0, "low budget")
    elif f.budget == "high":
        s["full"].add(1.0, "high budget")
        s["peft+rag"].add(0.5, "high budget: PEFT + knowledge base, the solution-provider route of seed 003")


# --------------------------------------------------------------------------------------------- ladder
def _quality_metric(rungs: dict[str, dict[str, Any]]) -> str | None:
    for metric in QUALITY_METRICS:
        if sum(isinstance(v, dict) and isinstance(v.get(metric), (int, float)) for v in rungs.values()) >= 2:
            return metric
    return None


def _apply_ladder(f: Facts, ladder: Any, s: dict[str, RouteScore], notes: list[str]) -> bool:
    """Measured results outweigh the rules; a malformed ladder is reported and ignored."""
    rungs = ladder.get("rungs") if isinstance(ladder, dict) else None
    if not isinstance(rungs, dict) or not rungs:
        notes.append("ladder results present but without 'rungs'; ignored")
        return False
    metric = _quality_metric(rungs)
    used = False
    if metric:
        values = {r: float(v[metric]) for r, v in rungs.items()
                  if r in s and isinstance(v, dict) and isinstance(v.get(metric), (int, float))}
        best = max(values.values())
        for route, q in values.items():
            rel = (q - best) / best if best > 0 else 0.0
            s[route].add(max(-6.0, 2.0 + 10.0 * rel), f"measured {metric} {q:.3f} (best rung {best:.3f})")
        used = bool(values)
    if f.latency_ms is not None:
        for route, v in rungs.items():
            p99 = v.get("p99_latency_ms") if isinstance(v, dict) else None
            if route in s and isinstance(p99, (int, float)) and p99 > f.latency_ms:
                s[route].add(-2.0, f"measured P99 {p99:.0f} ms > target {f.latency_ms:g} ms")
                used = True
    rec = ladder.get("recommendation")
    chosen = rec.get("rung") if isinstance(rec, dict) else None
    gates = ladder.get("gates")
    if isinstance(chosen, str) and chosen in s and isinstance(gates, list) and gates:
        if rec.get("passes") is True:
            s[chosen].add(6.0, f"the cheapest measured rung that passes all {len(gates)} business gate(s)")
            used = True
        else:
            notes.append(f"no measured rung passes every business gate; {chosen} comes closest "
                         f"({rec.get('reason', '')})".rstrip(" ()"))
    return used


def advise(facts: dict[str, Any], ladder: dict[str, Any] | None = None) -> Advice:
    """Rank the routes for these facts (validated; FactsError on bad input), refined by ladder results."""
    f = parse_facts(facts)
    scores = {r: RouteScore(r, PRIOR[r], [f"{PRIOR[r]:+.1f} prior: {PRIOR_REASON[r]}"]) for r in ROUTES}
    notes: list[str] = []
    _apply_rules(f, scores)
    _apply_compute(f, scores, notes)
    _apply_budget(f, scores)
    ladder_used = _apply_ladder(f, ladder, scores, notes) if ladder is not None else False
    ranked = sorted(scores.values(), key=lambda r: (-round(r.score, 6), ROUTE_COST[r.route]))
    facts_used = {**f.model_dump(), "doc_tokens": f.tokens}
    return Advice(route=ranked[0].route, ranked=ranked, facts=facts_used, ladder_used=ladder_used, notes=notes)
