"""The one config schema for every stage of verticalize.

Every field carries help text (``description``); defaults come from the seed documents (LoRA r=8, alpha=32,
q_proj/v_proj, dropout 0.1, early stopping after 3 evaluations, clipping 1.0, 20 prefix tokens).
A config is loaded from YAML and overridden with ``key.sub=value`` pairs; unknown keys are reported with their
full path and the closest valid names.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from verticalize.errors import UserError
from verticalize.methods import get as get_method
from verticalize.methods import method_names
from verticalize.rungs import DEFAULT_LADDER


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message says which key and what to do."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- project / model
class ProjectConfig(Section):
    name: str = Field("vertical", description="Project name, used in run directory names and model cards.")
    run_dir: str = Field("runs/vertical", description="Directory where every stage writes its artifacts.")
    docs: list[str] = Field(default_factory=list,
                            description="Document folders or globs to ingest (recursive); relative to the config file.")
    seed_data: list[str] = Field(default_factory=list,
                                 description="User-labelled example files (alpaca, sharegpt, messages or text,label; "
                                             "JSONL or CSV).")
    test_set: str | None = Field(None, description="A human-written test file (our JSONL or SQuAD JSON) that replaces "
                                                   "the synthetic test split.")
    seed: int = Field(42, description="Random seed for every stage (splits, training, sampling).")
    language: Literal["auto", "zh", "en"] = Field("auto", description="Main language of the documents; auto detects.")
    system_prompt: str = Field("You are a careful assistant for this domain. Answer from the domain's rules.",
                               description="Domain system prompt used in training and by every evaluation rung.")
    refusal: dict[str, str] = Field(
        {"en": "The documents do not contain the answer.", "zh": "资料中没有答案。"},
        description="The answer, per language (en, zh), when the documents do not hold one: taught in training, "
                    "asked for by the prompt, counted as a refusal by the ladder.")
    refusal_instruction: bool = Field(
        False, description="Also tell the model in the prompt to answer with project.refusal when the passages do "
                           "not hold the answer. Off: SmolLM2-135M then echoes the instruction or refuses most "
                           "questions (measured: 62 % false refusals on SQuAD 2.0); a trained adapter learns the "
                           "refusal without it. Turn it on for a larger base model.")


class ModelConfig(Section):
    base: str = Field("smollm2-135m-instruct",
                      description="Base model: a catalog name (see `verticalize models`), a local directory, "
                                  "a cached hub id, or a path to a .gguf file.")
    gguf_file: str | None = Field(None, description="GGUF file name inside `base` when `base` is a directory/hub id.")
    cache_dir: str | None = Field(None, description="Where converted models are cached; default "
                                                    "~/.cache/verticalize/models (env VERTICALIZE_CACHE).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype for the frozen base; auto = bf16 where the hardware supports it.")
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the model directory (off: "
                                                       "safety default).")
    max_seq_len: int = Field(1024, ge=16, description="Longest training/eval sequence in tokens; longer is truncated.")


# --------------------------------------------------------------------------------------------- ingest / kb
class PIIConfig(Section):
    enabled: bool = Field(True, description="Redact personal data before anything is stored.")
    kinds: list[str] = Field(["id_card", "mobile", "landline", "bank_card", "email", "ip"],
                             description="Kinds of PII to redact.")


class IngestConfig(Section):
    formats: list[str] = Field([".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".csv", ".jsonl"],
                               description="File extensions read; others are listed as skipped (unsupported).")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are skipped (too large).")
    chunk_chars: int = Field(600, ge=50, description="Target chunk size in characters.")
    chunk_overlap: int = Field(80, ge=0, description="Characters of overlap between neighbouring chunks.")
    min_chunk_chars: int = Field(20, ge=1, description="Chunks shorter than this are merged or dropped.")
    strip_boilerplate: bool = Field(True, description="Remove lines repeated across pages (headers/footers).")
    dedup: Literal["none", "exact", "near"] = Field("near", description="Chunk deduplication: exact (normalised) "
                                                                       "or near-duplicate (MinHash).")
    near_dup_threshold: float = Field(0.85, gt=0, le=1, description="Jaccard threshold for near duplicates.")
    pii: PIIConfig = Field(default_factory=PIIConfig, description="PII redaction.")


class KBConfig(Section):
    backend: str = Field("local", description="Index backend: local (bm25s on disk) or a registered external one.")
    embedding_model: str | None = Field(None, description="Local path of a sentence-embedding model to add dense "
                                                          "retrieval (hybrid with BM25 through RRF).")
    top_k: int = Field(3, ge=1, description="Chunks retrieved per question by the RAG rungs and the server.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    bm25_k1: float = Field(1.5, description="BM25 k1.")
    bm25_b: float = Field(0.75, description="BM25 b.")
    index_workers: int = Field(0, ge=0, description="Processes that segment text while building the index (0: one "
                                                    "per CPU core, up to 8; 1: none).")

    # How the index is queried (top_k: each caller passes it to search) or how fast it is built (index_workers),
    # not what it holds: changing them must not rebuild the knowledge base.
    RUNTIME_SETTINGS: ClassVar[frozenset[str]] = frozenset({"top_k", "index_workers"})

    def index_settings(self) -> dict[str, Any]:
        """The settings that shape the built index: the kb stage's key (``pipeline``) hashes these only."""
        return self.model_dump(mode="json", exclude=set(self.RUNTIME_SETTINGS))


# --------------------------------------------------------------------------------------------- data
class TeacherConfig(Section):
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint of the teacher model "
                                                   "(env VERTICALIZE_TEACHER_BASE_URL).")
    model: str | None = Field(None, description="Teacher model name (env VERTICALIZE_TEACHER_MODEL).")
    api_key_env: str = Field("VERTICALIZE_TEACHER_API_KEY", description="Environment variable holding the API key.")
    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, description="Retries with exponential back-off.")
    temperature: float = Field(0.3, ge=0, description="Sampling temperature for generation.")
    max_tokens: int = Field(2048, ge=16, description="Longest teacher reply in tokens (reasoning models spend many "
                                                     "on <think> before the JSON).")


class AugmentConfig(Section):
    glossary: str | None = Field(None, description="Glossary file (CSV/JSON: term, replacement or synonyms) for "
                                                   "entity replacement and synonym swap.")
    entity_replacement: bool = Field(False, description="Create variants by consistent glossary entity replacement.")
    synonym_swap: bool = Field(False, description="Create variants by swapping glossary synonyms.")
    list_reorder: bool = Field(True, description="Create variants of list answers with reordered items.")
    back_translation: bool = Field(False, description="zh<->en back-translation through the teacher.")
    paraphrase: bool = Field(False, description="Question paraphrase through the teacher.")
    max_per_example: int = Field(1, ge=0, description="At most this many augmented variants per example.")


class ContextConfig(Section):
    enabled: bool = Field(True, description="Train the way the model is asked with retrieval (RAFT): each pair "
                                            "gets passages from the knowledge base in the serving prompt format.")
    distractors: int = Field(2, ge=0, description="Retrieved non-answer passages shown beside the source chunk.")
    oracle_share: float = Field(0.9, ge=0, le=1, description="Share of context examples that show the source "
                                                             "chunk; the rest show distractors only and are "
                                                             "answered with project.refusal.")
    closed_book_share: float = Field(0.2, ge=0, le=1, description="Share of pairs also kept without passages, "
                                                                  "so the peft rung learns facts too.")
    near_miss_share: float = Field(0.0, ge=0, le=1, description="Share of refusal examples that show the source "
                                                                 "chunk with its answer sentences cut out (on "
                                                                 "topic, still no answer). Off: the small default "
                                                                 "model learned to refuse answerable questions.")
    target_examples: int = Field(300, ge=0, description="On a small corpus each training pair is written in up "
                                                        "to 4 retrieval-augmented forms (other distractors, oracle "
                                                        "or refusal drawn anew) until about this many are made; "
                                                        "0: one form per pair.")
    passage_tokens: int = Field(200, ge=20, description="Longest passage shown in a prompt (estimated tokens; a "
                                                        "longer chunk is shown as its sentences around the "
                                                        "question), in training, evaluation and serving alike.")


class DataConfig(Section):
    generator: Literal["offline", "rules", "spans", "llm", "both"] = Field(
        "offline", description="Distillation generator: offline = rules + spans (both offline); rules = the rule "
                               "engine; spans = answer-first questions about names, dates, numbers, definitions; "
                               "llm = an LLM teacher; both = rules + llm.")
    max_per_chunk: int = Field(4, ge=0, description="At most this many generated pairs per chunk.")
    max_kind_share: float = Field(0.25, gt=0, le=1, description="At most this share of the distilled pairs may come "
                                                                "from one generator kind (e.g. rules:percent); the "
                                                                "surplus is dropped. Never below a uniform share "
                                                                "over the kinds present; 1 turns the cap off.")
    cloze: bool = Field(True, description="Also make cloze (fill-in) questions.")
    grounding_threshold: float = Field(0.6, ge=0, le=1, description="Minimum share of answer characters found in the "
                                                                   "chunk for a pair to be kept.")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="Train/validation/test shares, "
                                                                           "split by source document.")
    decontaminate_threshold: float = Field(0.8, gt=0, le=1, description="Training questions this similar to a test "
                                                                        "question are removed.")
    test_seed_max_share: float = Field(0.5, ge=0, le=1, description="The test split is drawn from human seed data "
                                                                    "first, but takes at most this share of it (the "
                                                                    "rest trains).")
    dedup_threshold: float = Field(0.85, gt=0, le=1, description="Examples whose question+answer is this similar "
                                                                 "(MinHash Jaccard) to a kept one are dropped.")
    task: Literal["qa", "classification"] = Field("qa", description="Task form of the dataset.")
    labels: list[str] = Field(default_factory=list, description="Label set for classification (empty: from data).")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="LLM teacher endpoint.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation.")
    context: ContextConfig = Field(default_factory=ContextConfig, description="Retrieval-augmented training "
                                                                              "examples (RAFT).")
    general_mix: float = Field(0.0, ge=0, le=0.5, description="Share of the training split made of the shipped "
                                                             "general-skill examples (facts, instructions, "
                                                             "arithmetic, refusals; English and Chinese), against "
                                                             "forgetting; disjoint from the forgetting probe.")

    @field_validator("split")
    @classmethod
    def _split_sums_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"shares must add up to 1, got {list(v)} (sum {sum(v):.3f})")
        return v


# --------------------------------------------------------------------------------------------- train
class LoraConfig(Section):
    r: int = Field(8, ge=1, description="LoRA rank r (ΔW = A·Bᵀ with r ≪ d).")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] | Literal["auto", "all-linear"] = Field(
        ["q_proj", "v_proj"], description="Modules that get adapters; auto = the catalog's targets for the model.")


class PrefixConfig(Section):
    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens for prefix and prompt tuning.")
    prompt_init_text: str | None = Field(None, description="Prompt tuning: initialise from this text's embeddings.")


class StageConfig(Section):
    name: str = Field(description="Stage name; the adapter is saved under this name.")
    task: Literal["sft", "pretrain", "classification", "dpo", "kto"] = Field(
        "sft", description="sft: chat QA; pretrain: continued pre-training on document text; classification; dpo: "
                           "preference tuning on (prompt, chosen, rejected) pairs; kto: preference tuning on "
                           "unpaired ratings (prompt, completion, label) or pairs; dpo and kto train on top of "
                           "the earlier stages.")
    data: str = Field("dataset", description="'dataset' (the built dataset), 'corpus' (document chunks), "
                                             "'preferences' (RUN/feedback/preferences.jsonl, for dpo or kto), "
                                             "'ratings' (RUN/feedback/ratings.jsonl, for kto), or a path to a "
                                             "JSONL file.")
    epochs: float | None = Field(None, description="Epochs for this stage (default: train.epochs).")
    learning_rate: float | None = Field(None, description="Learning rate for this stage (default: train.lr).")


class TrainConfig(Section):
    method: str = Field("lora", description=f"Adaptation method: {', '.join(method_names())} (registered in "
                                            "verticalize.methods; all through PEFT except full, the full "
                                            "fine-tuning baseline).")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA/DoRA/QLoRA settings.")
    prefix: PrefixConfig = Field(default_factory=PrefixConfig, description="Prefix/prompt tuning settings.")
    epochs: float = Field(3.0, gt=0, description="Training epochs.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    max_tokens: int | None = Field(150_000, ge=1, description="Token budget: at most this many tokens are trained "
                                                              "on (epochs are cut to it; null: no budget). The "
                                                              "default keeps a CPU run near 8 minutes; raise it on "
                                                              "a GPU.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (high because the default token budget allows ~150 steps).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps for linear warm-up (then cosine).")
    batch_tokens: int = Field(1024, ge=16, description="Tokens per micro-batch (padding-free with packing); "
                                                      "one optimizer step = batch_tokens x grad_accum per process.")
    pack_len: int = Field(512, ge=16, description="Longest packed row: a micro-batch is run as rows of at most "
                                                  "this many tokens (attention cost grows with the square of a "
                                                  "row), gradients accumulated over its rows.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps.")
    dpo_beta: float = Field(0.1, gt=0, description="DPO's and KTO's beta (how far from the reference a dpo or kto "
                                                   "stage may move).")
    dpo_batch_size: int = Field(2, ge=1, description="Preference pairs (dpo) or rated answers (kto, at least 2) "
                                                     "per micro-batch.")
    packing: bool = Field(True, description="Pack several examples into one sequence (no padding waste).")
    assistant_only_loss: bool = Field(True, description="Loss only on assistant tokens.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    early_stopping_patience: int = Field(3, ge=0, description="Stop after this many evaluations without "
                                                             "validation-loss improvement (0: off).")
    max_val_examples: int | None = Field(48, ge=1, description="Validation loss is computed on at most this many "
                                                               "validation examples (a stable sample; null: all).")
    eval_every: int = Field(50, ge=1, description="Evaluate validation loss every N steps (and at epoch end).")
    save_every: int = Field(100, ge=1, description="Write a resumable checkpoint every N steps.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="Compute precision; auto = bf16 "
                                                                                   "where supported.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    stages: list[StageConfig] = Field(default_factory=list,
                                      description="Layered fine-tuning: stages trained in order, each on top of "
                                                  "the previous; empty = one 'task' stage on the dataset.")
    device_memory_gb: float | None = Field(None, description="Memory to plan against (default: detected).")

    @field_validator("method")
    @classmethod
    def _registered_method(cls, v: str) -> str:
        get_method(v)  # UnknownMethodError (a ValueError) names the registered methods
        return v


# --------------------------------------------------------------------------------------------- evaluate
class GateConfig(Section):
    goal: str = Field(description="The business goal in the user's own words.")
    metric: str = Field(description="Metric name, e.g. f1, exact_match, accuracy, p99_latency_ms.")
    op: Literal[">=", ">", "<=", "<", "=="] = Field(">=", description="Comparison.")
    threshold: float = Field(description="Threshold the metric must meet.")


class EvalConfig(Section):
    rungs: list[str] = Field(list(DEFAULT_LADDER),
                             description="Ladder rungs to measure (prompt, rag, peft, peft+rag, full); with this "
                                         "default list, full is added when a full fine-tune was trained.")
    few_shot: int = Field(3, ge=0, description="Few-shot examples for the prompt rung.")
    max_new_tokens: int = Field(32, ge=1, description="Longest answer in tokens (answers are short spans; a trained adapter stops early).")
    max_examples: int | None = Field(None, ge=1, description="Evaluate at most this many test examples.")
    judge: bool = Field(False, description="Also score with the LLM judge (teacher endpoint).")
    general_probe: bool = Field(True, description="Forgetting guard: answer the shipped general-skill probe "
                                "(facts, arithmetic, instructions, harmful requests; zh + en) with the base and "
                                "the adapter; the ladder reports general_score and general_regression (gateable).")
    batch_size: int = Field(8, ge=1, description="Questions in flight at once (the engine batches them); each "
                                                 "answer's latency is what its request waited, so use 1 to measure "
                                                 "single-request latency.")
    feedback_holdout: float = Field(0.0, ge=0, le=0.5, description="`run --iterate`: this share of the approved "
                                    "corrected questions (a stable choice, at least one) stays out of training and "
                                    "tests both versions, so the report says whether the new version learned from "
                                    "feedback beyond the questions it was corrected on (0: every correction trains; "
                                    "the comparison is on the test set only).")


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="Port.")
    engine: Literal["auto", "openvino", "onnxruntime", "split", "embedded", "llamacpp", "vllm"] = Field(
        "auto", description="Inference engine of the gateway and the ladder. auto: openvino on a CPU where it can "
                            "serve the run (a Llama-architecture base, LoRA-family adapters), else embedded "
                            "(Transformers + PEFT in-process); the choice and its reason are logged and recorded "
                            "in the ladder. openvino / onnxruntime: that engine alone (onnxruntime answers one "
                            "request at a time per model: the fastest single stream, no batching). split: a "
                            "request that arrives while nothing else is generating goes to onnxruntime, the "
                            "others to openvino — the fastest single stream and batching, but a greedy answer "
                            "may then depend on the load (the two compute differently; the ladder records which "
                            "engine answered each row). llamacpp and vllm serve exported models; the ladder then "
                            "uses auto's choice.")
    api_key_env: str = Field("VERTICALIZE_API_KEY", description="Env var with the accepted API key(s), "
                                                                "comma-separated; unset = no auth, and then "
                                                                "`serve` binds only a loopback address unless "
                                                                "--insecure.")
    review_key_env: str = Field("VERTICALIZE_REVIEW_KEY", description="Env var with the key(s) that may use the "
                                "feedback review API and /admin/reload, comma-separated; unset = any API key.")
    max_prompt_tokens: int = Field(2048, ge=1, description="Longest accepted prompt.")
    max_output_tokens: int = Field(512, ge=1, description="Largest accepted max_tokens.")
    max_body_bytes: int = Field(1_000_000, ge=0, description="Largest accepted request body in bytes, checked from "
                                                             "Content-Length and while a chunked body is read; "
                                                             "more gets 413 before any work (0: no limit).")
    max_messages: int = Field(256, ge=1, description="Most messages in one chat request; more gets 400.")
    max_message_chars: int = Field(65536, ge=1, description="Longest single message (or completion prompt) in "
                                                            "characters; longer gets 400.")
    max_stop: int = Field(4, ge=0, description="Most stop sequences in one request (OpenAI's limit is 4).")
    max_stop_chars: int = Field(256, ge=1, description="Longest stop sequence in characters.")
    max_chars_per_token: float = Field(16.0, ge=0, description="The character pre-check: a prompt of more than "
                                       "max_prompt_tokens × this many characters is refused (400, "
                                       "context_length_exceeded) before retrieval or tokenising; a token covers "
                                       "fewer characters than this on any ordinary text, so nothing that fits is "
                                       "refused (0: off, tokenise everything).")
    protect_metrics: bool = Field(True, description="With an API key set: /metrics and /ready need the key too "
                                                    "(/health stays open for liveness probes). Without a key "
                                                    "nothing is protected.")
    max_concurrency: int = Field(8, ge=1, description="Requests generating at once (the engine batches them: "
                                                      "serve.max_batch_size per model).")
    max_queue: int = Field(16, ge=0, description="Requests waiting beyond that; more get 429.")
    request_timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    rag_adapters: list[str] = Field(default_factory=list, description="Adapters whose profile always adds retrieval.")
    max_batch_size: int = Field(8, ge=1, description="embedded and openvino engines: requests generated together "
                                                     "in one batch (per served model for openvino).")
    batch_window_ms: float = Field(10.0, ge=0, description="embedded engine: how long the first request of a batch "
                                                          "waits for others to join it.")
    torch_threads: int = Field(0, ge=0, description="embedded engine: torch CPU threads (0: torch's default). "
                                                    "1 is fastest on a CPU shared with other work.")
    gguf_type: Literal["f16", "q8_0", "f32"] = Field("f16", description="Weight type of `export --to gguf/ollama` "
                                                                       "(norms stay f32).")
    gguf_dir: str | None = Field(None, description="llamacpp engine: folder of exported GGUFs (one <name>/model.gguf "
                                                   "per adapter); default RUN/export/gguf.")
    openvino_weights: Literal["q8_0", "f16"] = Field("q8_0", description="openvino engine: weight type of the "
                                                     "GGUF written per served model (base, base + each adapter "
                                                     "merged); Q8_0 keeps a LoRA delta, Q4 would not.")
    openvino_threads: int = Field(0, ge=0, description="openvino engine: CPU threads per model (0: one per core).")
    openvino_cache_gb: int = Field(1, ge=1, description="openvino engine: KV-cache memory per served model, GB.")
    openvino_precision: Literal["", "f32", "bf16", "f16"] = Field(
        "", description="openvino engine: inference precision ('' = the CPU plugin's choice, bf16 where the CPU "
                        "has it; f32 answers as Transformers in float32 do).")
    single_stream_quiet_ms: float = Field(500.0, ge=0, description="split engine: once requests overlap "
                                          "(concurrent load), the next ones stay on openvino's batch until none "
                                          "have overlapped for this long; a lone request, or requests sent one "
                                          "after another, go to onnxruntime.")
    onnxruntime_precision: Literal["int8", "fp32"] = Field(
        "int8", description="onnxruntime engine: weights of the ONNX model converted per served model (int8: block "
                            "32 with int8 activations, the speed; fp32 answers as Transformers in float32 do).")
    onnxruntime_threads: int = Field(0, ge=0, description="onnxruntime engine: CPU threads per model (0: one per "
                                                          "core).")
    llamacpp_threads: int = Field(0, ge=0, description="llamacpp engine: CPU threads (0: one per core).")
    llamacpp_n_ctx: int = Field(4096, ge=64, description="llamacpp engine: context window in tokens.")
    vllm_base_url: str = Field("http://127.0.0.1:8000/v1", description="vllm engine: the OpenAI-compatible URL of "
                                                                      "the vLLM server (see export --to vllm).")
    vllm_api_key_env: str = Field("VLLM_API_KEY", description="vllm engine: env var with the vLLM server's API key.")


class PlanConfig(Section):
    device: str = Field("auto", description="Device profile for estimates (auto, cpu, a100-80g, h100-80g, "
                                            "rtx4090, ...).")
    num_devices: int = Field(1, ge=1, description="Devices for data parallel training.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage for the estimate.")
    price_per_device_hour: float = Field(0.0, ge=0, description="Cost per device-hour for the cost estimate.")
    device_tflops: float | None = Field(None, description="Sustained TFLOP/s to assume (default: the profile's, "
                                                          "times the calibration measured on this machine).")
    calibration_file: str | None = Field(None, description="Throughput calibration written by `verticalize "
                                         "estimate --calibrate RUN` (default: $VERTICALIZE_CALIBRATION, else "
                                         "~/.cache/verticalize/throughput_calibration.json).")
    memory_margin: float = Field(0.25, ge=0, lt=1, description="The memory estimate's measured error "
                                 "(bench/estimator_validation.py: up to 24 % high): train refuses a setting only "
                                 "when the estimate less this share still does not fit; in between it warns.")
    refuse_unfit: bool = Field(True, description="Refuse to train a setting whose memory estimate does not fit "
                                                 "(`verticalize train --force` turns it off for one run).")


class Requirements(Section):
    gates: list[GateConfig] = Field(default_factory=list, description="Business goals mapped to metric gates.")


class Config(Section):
    project: ProjectConfig = Field(default_factory=ProjectConfig, description="Project and inputs.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Document ingest.")
    kb: KBConfig = Field(default_factory=KBConfig, description="Knowledge base.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training data.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation ladder.")
    requirements: Requirements = Field(default_factory=Requirements, description="Business gates.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving gateway.")
    plan: PlanConfig = Field(default_factory=PlanConfig, description="Estimates and planning.")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------- loading
def _field_names(model_cls: type[BaseModel]) -> list[str]:
    return list(model_cls.model_fields)


def _section_at(path: list[str]) -> type[BaseModel] | None:
    """The pydantic class reached by following ``path`` from Config (None when it is not a section)."""
    cls: Any = Config
    for part in path:
        field = cls.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def _unknown_key_message(path: list[str], key: str) -> str:
    cls = _section_at(path)
    names = _field_names(cls) if cls else []
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    where = ".".join(path + [key])
    hint = f"; did you mean {', '.join('.'.join(path + [c]) for c in close)}?" if close else ""
    valid = f" Valid keys here: {', '.join(names)}." if names else ""
    return f"unknown config key '{where}'{hint}{valid}"


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_key_message(loc[:-1], loc[-1]))
        else:
            lines.append(f"config key '{'.'.join(loc)}': {e['msg']} (got {e.get('input')!r})")
    return f"invalid config ({source}):\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lora.r=16`` → (['train','lora','r'], 16). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            if _section_at(path[: i + 1]) is None and not isinstance(node.get(part), dict):
                raise ConfigError(_unknown_key_message(path[:i], part))
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load YAML (or defaults when ``path`` is None), apply overrides, validate. Raises ConfigError."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}. Create one with `verticalize init DIR`.")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(data).__name__}")
        source = str(p)
        _resolve_relative_paths(data, p.parent)
    data = apply_overrides(data, overrides or [])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Paths in the project section are relative to the config file, so a project folder can move."""
    project = data.get("project")
    if not isinstance(project, dict):
        return

    def fix(v: Any) -> Any:
        if isinstance(v, str) and v and not Path(v).is_absolute():
            return os.path.normpath(base / v)
        return v

    for key in ("docs", "seed_data"):
        if isinstance(project.get(key), list):
            project[key] = [fix(v) for v in project[key]]
    for key in ("test_set", "run_dir"):
        if project.get(key):
            project[key] = fix(project[key])


# --------------------------------------------------------------------------------------------- starter project
def commented_yaml(model: BaseModel | None = None, indent: int = 0) -> str:
    """The resolved config as YAML with each field's help text as a comment above it."""
    model = model or Config()
    out: list[str] = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            out.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(commented_yaml(value, indent + 1))
        else:
            # JSON is valid YAML and keeps every value on one line under its comment.
            out.append(f"{pad}{name}: {json.dumps(_jsonable(value), ensure_ascii=False)}")
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
