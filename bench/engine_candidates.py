"""Which fast CPU engine should the gateway default to? Every candidate measured on the same prompts, one process each.

Candidates (each in its own subprocess, one after another, never two at once):
  * embedded        — the current EmbeddedEngine (Transformers + PEFT, adapter unmerged, its BatchScheduler)
  * hf_dynamic_fp32 — plain HF generate (DynamicCache) in float32, adapter unmerged (the dtype question)
  * hf_static       — HF generate with a static KV cache (adapter unmerged), float32
  * hf_static_compile — the same with torch.compile on the forward (skipped if it does not compile in time)
  * hf_cb           — Transformers' own continuous batching (init_continuous_batching, paged KV cache), adapter active
  * openvino_genai  — OpenVINO GenAI on an optimum-intel export (int8 weights): LLMPipeline for a single stream,
                      ContinuousBatchingPipeline for concurrency, the PEFT adapter applied at run time (Adapter)
  * ctranslate2     — CTranslate2 (int8) on the merged model (it has no LoRA at run time)
  * llama_cpp       — llama-cpp-python on the packaged Q4_1 GGUF and on an F16 GGUF, the LoRA as a GGUF adapter;
                      concurrency through llama.cpp's own batch API (several sequences in one llama_decode)

Same inputs for all: the chat template rendered by the base's HF tokenizer, passed to every engine as token ids.
Prompts: a ~300-token RAG-style prompt (context chunks + question) and a short classification prompt. Greedy
decoding, end-of-sequence ignored where the engine allows it (so that every stream decodes its full length).
Figures per candidate:
  load_s                 building the engine from files already converted (conversion time is under prepare)
  ttft_ms                time to first token, RAG prompt and short prompt (median of 3)
  decode_tok_s           single stream, 64 new tokens on the RAG prompt: (n-1)/(t_last - t_first), median of 3
  aggregate_tok_s        N distinct RAG prompts submitted at once (N = 1, 4, 8), 32 new tokens each:
                         all tokens / wall time (where the engine batches; else sequential, marked so)
  short_c8               8 short prompts at once, 3 new tokens, 2 rounds: p50/p99 latency (the gateway's gate)
  lora                   whether a PEFT LoRA adapter is applied at run time without a copy of the base, and how
                         its greedy tokens compare with the PEFT float32 reference (leading tokens that agree)

    .venv/bin/python bench/engine_candidates.py prepare --cand-python /work/cand/bin/python \\
        --export-python /work/ovx/bin/python
    .venv/bin/python bench/engine_candidates.py all --cand-python /work/cand/bin/python    # runs every candidate
    PY bench/engine_candidates.py measure CANDIDATE                                         # one candidate
    .venv/bin/python bench/engine_candidates.py merge                                       # writes the JSON

The candidate engines are not dependencies of verticalize: they are installed into a separate venv layered on
top of .venv (a .pth file), so that torch stays 2.13.0 CPU; optimum-intel (which pins transformers<5.6) lives
in a third venv used only to export. Writes bench/results/engine_candidates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).parent / "results" / "engine_candidates.json"
DEFAULT_WORK = Path(os.environ.get("ENGINE_BENCH_WORK", "/tmp/engine_candidates"))
THREADS = int(os.environ.get("ENGINE_BENCH_THREADS", str(os.cpu_count() or 2)))
LORA_B_SCALE = 0.15  # B of the fresh adapter scaled: the adapted model still answers, differently from the base
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # catalog default
DECODE_TOKENS, AGG_TOKENS, SHORT_TOKENS, REF_TOKENS = 64, 32, 3, 16
CONCURRENCY = (1, 4, 8)
if os.environ.get("ENGINE_BENCH_SMOKE"):  # a quick check that every candidate runs (figures meaningless)
    DECODE_TOKENS, AGG_TOKENS, CONCURRENCY = 4, 2, (1, 2)

SYSTEM_RAG = "You are a careful assistant for a bank. Answer only from the context; cite the chunk numbers."
CHUNKS = [
    "The annual fee of the Classic card is 30 euros. It is waived in the first year and in any year in which the "
    "cardholder spends at least 3,000 euros with the card.",
    "The Gold card costs 90 euros a year. Its fee is never waived, but it includes travel insurance for the "
    "cardholder and family members travelling with them.",
    "A late payment fee of 15 euros applies when the minimum payment has not arrived by the due date. Two late "
    "payments within twelve months raise the interest rate to the penalty rate.",
    "Cash withdrawals with a credit card cost 3 percent of the amount, at least 5 euros, and interest is charged "
    "from the day of the withdrawal, with no interest-free period.",
    "A customer may ask for a higher credit limit once every six months. The bank checks income, existing debts "
    "and the payment history of the last twelve months before it decides.",
    "Lost or stolen cards must be reported at once by phone or in the app. The cardholder is not liable for "
    "payments made after the report; before it, liability is capped at 50 euros.",
    "Foreign currency payments carry a 1.5 percent exchange fee on the Classic card and none on the Gold card. "
    "The exchange rate is the card network's rate on the day of settlement.",
]
QUESTIONS = ["When is the annual fee of the Classic card waived, and what does the Gold card cost?",
             "What happens if I pay late twice in a year?",
             "How much does a cash withdrawal cost and when is interest charged?",
             "How often can I ask for a higher credit limit?",
             "What should I do if my card is stolen, and am I liable?",
             "What fees apply to payments in a foreign currency?",
             "Which card is better for someone who travels abroad a lot?",
             "Explain all the fees of the Classic card."]
SHORT_PROMPTS = ["Classify the ticket as billing, technical or account: 'I was charged twice this month.' "
                 "Answer with one word.",
                 "Classify the ticket as billing, technical or account: 'The app crashes at login.' "
                 "Answer with one word.",
                 "Classify the ticket as billing, technical or account: 'Please change my e-mail address.' "
                 "Answer with one word."]
SYSTEM_SHORT = "You are a careful assistant for a bank's support desk."


def rag_messages(i: int) -> list[dict[str, str]]:
    """Prompt i: the chunks rotated by i (so concurrent prompts do not share a long prefix) and question i."""
    order = CHUNKS[i % len(CHUNKS):] + CHUNKS[:i % len(CHUNKS)]
    context = "\n".join(f"[{k + 1}] {c}" for k, c in enumerate(order))
    return [{"role": "system", "content": SYSTEM_RAG},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {QUESTIONS[i % len(QUESTIONS)]}\n"
                                        "Answer in detail."}]


def short_messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_SHORT}, {"role": "user", "content": SHORT_PROMPTS[i % 3]}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def r1(x: float | None, k: int = 1) -> float | None:
    return None if x is None else round(x, k)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "threads_used": THREADS, "platform": platform.platform(),
                            "python": platform.python_version(), "load_avg": list(os.getloadavg())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx")))
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    return info


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


# =============================================================================================== prepare
def prepare(work: Path, cand_python: str, export_python: str | None, llama_src: str | None) -> None:
    """Adapter, references and every converted artifact; times each conversion (first-run cost for a user)."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verticalize.config import load_config
    from verticalize.models import embedded_gguf_path, resolve_base

    work.mkdir(parents=True, exist_ok=True)
    prep: dict[str, Any] = {"machine": machine_info()}
    cfg = load_config(None, [f"project.run_dir={work / 'run'}"])
    t = time.perf_counter()
    base_dir = resolve_base(cfg.model)
    prep["base_dir"], prep["resolve_base_s"] = str(base_dir), r1(time.perf_counter() - t, 2)
    prep["gguf_q4_1"] = str(embedded_gguf_path())
    tok = AutoTokenizer.from_pretrained(base_dir)

    # Two PEFT LoRA adapters, freshly initialised with non-zero B (init_lora_weights=False) so they change the output
    adapters = {}
    for k, name in enumerate(["task", "task2"]):
        path = work / "adapters" / name
        if not (path / "adapter_model.safetensors").is_file():
            torch.manual_seed(k)
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=LORA_TARGETS,
                                                    init_lora_weights=False, lora_dropout=0.0))
            with torch.no_grad():  # scale B so that the adapted model stays a language model (outputs still differ)
                for n, p in peft.named_parameters():
                    if "lora_B" in n:
                        p.mul_(LORA_B_SCALE * (1 + 3 * k))  # task2 stronger: the two adapters answer differently
            peft.save_pretrained(path)
            (path / "verticalize_adapter.json").write_text(json.dumps({"name": name, "method": "lora"}))
        adapters[name] = str(path)
    prep["adapters"] = adapters

    # Token ids every engine gets, and the PEFT float32 reference (greedy, REF_TOKENS, eos ignored)
    prompts = {"rag": [tok.apply_chat_template(rag_messages(i), add_generation_prompt=True, tokenize=True,
                                               return_dict=False) for i in range(8)],
               "short": [tok.apply_chat_template(short_messages(i), add_generation_prompt=True, tokenize=True,
                                                 return_dict=False) for i in range(8)]}
    prompts = {k: [list(map(int, ids)) for ids in v] for k, v in prompts.items()}
    prep["prompt_tokens"] = {"rag": [len(p) for p in prompts["rag"]], "short": [len(p) for p in prompts["short"]]}
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft = PeftModel.from_pretrained(model, adapters["task"], adapter_name="task")
    peft.load_adapter(adapters["task2"], adapter_name="task2")
    refs: dict[str, list[int]] = {}
    ids = torch.tensor([prompts["rag"][0]])  # open-ended: the adapters change the answer from its first token
    with torch.inference_mode():
        for name in ["base", "task", "task2"]:
            kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=REF_TOKENS,
                      do_sample=False, min_new_tokens=REF_TOKENS, pad_token_id=tok.eos_token_id)
            if name == "base":
                with peft.disable_adapter():
                    out = peft.generate(**kw)
            else:
                peft.set_adapter(name)
                out = peft.generate(**kw)
            refs[name] = out[0, ids.shape[1]:].tolist()
    prep["reference_texts"] = {k: tok.decode(v) for k, v in refs.items()}
    (work / "inputs.json").write_text(json.dumps({"prompts": prompts, "reference": refs, "base_dir": str(base_dir),
                                                  "adapters": adapters, "gguf_q4_1": prep["gguf_q4_1"],
                                                  "eos": [tok.eos_token_id]}))
    # The merged model (CTranslate2 has no run-time LoRA: one merged copy per adapter)
    merged = work / "merged" / "task"
    if not (merged / "config.json").is_file():
        t = time.perf_counter()
        peft.set_adapter("task")
        base_copy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                              adapters["task"]).merge_and_unload()
        base_copy.save_pretrained(merged)
        tok.save_pretrained(merged)
        prep["merge_s"] = r1(time.perf_counter() - t, 2)
    del peft, model

    old = json.loads((work / "prepare.json").read_text()).get("conversions", {}) \
        if (work / "prepare.json").is_file() else {}

    def timed(name: str, cmd: list[str], out: Path, timeout: int = 600) -> None:
        if out.exists():  # converted by an earlier prepare: keep what it measured
            prep.setdefault("conversions", {})[name] = old.get(name) or {"cached": True, "path": str(out)}
            return
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        prep.setdefault("conversions", {})[name] = {
            "seconds": r1(time.perf_counter() - t, 1), "rc": p.returncode, "path": str(out), "cmd": " ".join(cmd),
            "tail": (p.stdout + p.stderr)[-600:] if p.returncode else None,
            "size_mb": r1(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20 if out.is_dir()
                          else (out.stat().st_size / 2**20 if out.exists() else 0), 1)}

    if export_python:
        for fmt in ("int8", "fp16"):
            timed(f"openvino_{fmt}", [export_python, "-m", "optimum.commands.optimum_cli", "export", "openvino",
                                      "--model", str(base_dir), "--task", "text-generation-with-past",
                                      "--weight-format", fmt, str(work / "ov" / fmt)], work / "ov" / fmt)
    ct2_conv = str(Path(cand_python).parent / "ct2-transformers-converter")
    timed("ctranslate2_int8", [ct2_conv, "--model", str(merged), "--quantization", "int8",
                               "--output_dir", str(work / "ct2" / "task_int8")], work / "ct2" / "task_int8")
    (work / "gguf").mkdir(exist_ok=True)
    if llama_src:
        src = Path(llama_src)
        timed("gguf_f16_base", [cand_python, str(src / "convert_hf_to_gguf.py"), str(base_dir), "--outtype", "f16",
                                "--outfile", str(work / "gguf" / "base-f16.gguf")], work / "gguf" / "base-f16.gguf")
        for name, path in adapters.items():
            timed(f"gguf_lora_{name}", [cand_python, str(src / "convert_lora_to_gguf.py"), path, "--base",
                                        str(base_dir), "--outtype", "f16",
                                        "--outfile", str(work / "gguf" / f"lora-{name}.gguf")],
                  work / "gguf" / f"lora-{name}.gguf")
    (work / "gguf").mkdir(exist_ok=True)
    (work / "prepare.json").write_text(json.dumps(prep, indent=2))
    print(json.dumps(prep, indent=2))


# =============================================================================================== the measurements
class Streams:
    """What a candidate provides: stream(ids, n, adapter) -> token times; batch(list of ids, n) -> per-request
    (first token time, end time, tokens) for requests submitted together at t0."""

    batches: bool = False
    note: str = ""

    def stream(self, ids: list[int], n: int, adapter: str | None) -> tuple[float, list[float], list[int]]:
        raise NotImplementedError

    def batch(self, prompts: list[list[int]], n: int, adapter: str | None) -> list[tuple[float, float, int]]:
        """Default: one after another (an engine that does not batch concurrent requests)."""
        out = []
        t0 = time.perf_counter()
        for ids in prompts:
            _, times, toks = self.stream(ids, n, adapter)
            out.append((times[0] - t0, times[-1] - t0, len(toks)))
        return out


def measure(streams: Streams, inputs: dict, adapter: str | None, load_s: float, budget_s: float = 170,
            lora: dict | None = None) -> dict:
    started = time.perf_counter()
    rag, short = inputs["prompts"]["rag"], inputs["prompts"]["short"]
    streams.stream(short[0], 2, adapter)  # warm-up
    res: dict[str, Any] = {"load_s": r1(load_s, 2)}
    ttft = {"rag": [], "short": []}
    for kind, ps in (("rag", rag), ("short", short)):
        for i in range(3):
            t0, times, _ = streams.stream(ps[i], 1 if kind == "rag" else 2, adapter)
            ttft[kind].append(times[0] - t0)
    res["ttft_ms"] = {k: r1(statistics.median(v) * 1000) for k, v in ttft.items()}
    rates, lens = [], []
    for i in range(3):
        t0, times, toks = streams.stream(rag[i], DECODE_TOKENS, adapter)
        rates.append((len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0)
        lens.append(len(toks))
        if i == 0:
            res["sample_text_ids"] = toks[:24]
    res["decode_tok_s"] = r1(statistics.median(rates))
    res["decode_runs"] = [r1(x) for x in rates]
    res["decode_tokens"] = lens
    agg = {}
    for c in CONCURRENCY:
        if time.perf_counter() - started > budget_s * 0.7:
            agg[str(c)] = "skipped: out of time"
            continue
        t0 = time.perf_counter()
        out = streams.batch(rag[:c], AGG_TOKENS, adapter)
        wall = time.perf_counter() - t0
        agg[str(c)] = {"tok_s": r1(sum(o[2] for o in out) / wall), "wall_s": r1(wall, 2),
                       "ttft_ms_max": r1(max(o[0] for o in out) * 1000), "tokens": [o[2] for o in out]}
    res["aggregate"] = agg
    res["aggregate_batched"] = streams.batches
    lat = []
    for _ in range(2):
        if time.perf_counter() - started > budget_s * 0.85:
            break
        out = streams.batch(short[:8], SHORT_TOKENS, adapter)
        lat.extend(o[1] for o in out)
    if lat:
        res["short_c8"] = {"p50_ms": r1(pct(lat, 50) * 1000), "p99_ms": r1(pct(lat, 99) * 1000), "n": len(lat)}
    if lora is not None:
        res["lora"] = lora
    res["measure_s"] = r1(time.perf_counter() - started)
    if streams.note:
        res["note"] = streams.note
    return res


def agreement(tokens: list[int], ref: list[int]) -> int:
    n = 0
    for a, b in zip(tokens, ref):
        if a != b:
            break
        n += 1
    return n


def lora_check(streams: Streams, inputs: dict, names: list[str | None], base_copy: bool, how: str) -> dict:
    """Greedy REF_TOKENS on RAG prompt 0 with each adapter (None = base): agreement with the PEFT fp32 reference,
    and whether the adapter changed this engine's own base answer (quantized weights may flip a near-tie)."""
    out: dict[str, Any] = {"runtime": True, "base_copy_per_adapter": base_copy, "how": how, "agree_of_16": {},
                           "differs_from_own_base": {}}
    got = {}
    for name in names:
        _, _, toks = streams.stream(inputs["prompts"]["rag"][0], REF_TOKENS, name)
        got[name or "base"] = toks
        out["agree_of_16"][name or "base"] = agreement(toks, inputs["reference"][name or "base"])
    for key, toks in got.items():
        if key != "base" and "base" in got:
            out["differs_from_own_base"][key] = toks != got["base"]
    return out


# ----------------------------------------------------------------------------------------------- HF / PEFT
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(THREADS)


def run_embedded(inputs: dict, work: Path) -> dict:
    """The EmbeddedEngine as the gateway builds it (dtype auto -> bf16 on this CPU), two adapters loaded."""
    _torch_threads()
    import torch

    from verticalize.config import load_config
    from verticalize.engine import EmbeddedEngine
    from verticalize.engine_api import GenerationRequest
    from verticalize.models import load_base

    cfg = load_config(None, [f"project.run_dir={work / 'run'}"])
    t = time.perf_counter()
    model, tok = load_base(cfg.model)
    engine = EmbeddedEngine(model, tok, "smollm2", {k: Path(v) for k, v in inputs["adapters"].items()})
    load_s = time.perf_counter() - t
    engine.eos_ids = lambda: set()  # decode every token asked for (the gateway would stop at EOS)
    engine.model.generation_config.eos_token_id = None

    class S(Streams):
        batches = True
        note = f"dtype {engine.model.dtype}; BatchScheduler (static batches, window 10 ms, max_batch 8)"

        def _req(self, ids, n, adapter):
            # the engine takes messages or a prompt; the rendered template as a raw prompt gives the same ids
            return GenerationRequest(model=adapter or "smollm2", prompt=tok.decode(ids), max_tokens=n,
                                     temperature=0)

        def stream(self, ids, n, adapter):
            times, t0 = [], time.perf_counter()
            r = engine.generate(self._req(ids, n, adapter))
            first = t0 + (r.time_to_first_token or 0)
            times = [first]
            for g in r.inter_token_latencies:
                times.append(times[-1] + g)
            return t0, times, tok(r.text, add_special_tokens=False)["input_ids"]

        def batch(self, prompts, n, adapter):
            out: list[Any] = [None] * len(prompts)
            t0 = time.perf_counter()

            def one(i):
                r = engine.generate(self._req(prompts[i], n, adapter))
                out[i] = (r.time_to_first_token or 0, time.perf_counter() - t0, r.completion_tokens)

            ths = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            return out

    s = S()
    # the raw-prompt path adds a BOS? check the ids the engine really sees
    seen = engine.count_prompt_tokens(GenerationRequest(model="task", prompt=tok.decode(inputs["prompts"]["short"][0])))
    lora = lora_check(s, inputs, [None, "task", "task2"], False,
                      "PEFT adapters unmerged on one base; mixed-adapter rows in one batch (adapter_names)")
    res = measure(s, inputs, "task", load_s, lora=lora)
    res["prompt_tokens_seen_vs_template"] = [seen, len(inputs["prompts"]["short"][0])]
    res["batches_run"], res["rows_run"] = engine.scheduler.batches_run, engine.scheduler.rows_run
    res["versions"] = versions("torch", "transformers", "peft")
    return res


def _hf_model(inputs: dict, dtype: str):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(inputs["base_dir"], dtype=getattr(torch, dtype))
    peft = PeftModel.from_pretrained(model, inputs["adapters"]["task"], adapter_name="task")
    peft.load_adapter(inputs["adapters"]["task2"], adapter_name="task2")
    peft.eval()
    return peft, time.perf_counter() - t


class HFGenerate(Streams):
    def __init__(self, peft, cache: str | None, extra: dict | None = None):
        self.peft, self.cache, self.extra = peft, cache, extra or {}

    def _gen(self, ids_list, n, adapter, streamer=None):
        import torch

        width = max(len(x) for x in ids_list)
        ids = torch.tensor([[0] * (width - len(x)) + x for x in ids_list])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids_list])
        kw = dict(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                  pad_token_id=0, streamer=streamer)
        if self.cache:
            kw["cache_implementation"] = self.cache
            kw["max_cache_len"] = 1024  # one cache size for every call (no re-allocation, no recompilation)
        kw.update(self.extra)
        with torch.inference_mode():
            if adapter is None:
                with self.peft.disable_adapter():
                    return self.peft.generate(**kw)
            self.peft.set_adapter(adapter)
            return self.peft.generate(**kw)

    def stream(self, ids, n, adapter):
        times: list[float] = []
        toks: list[int] = []

        class St:
            first = True

            def put(self, value):
                if St.first:  # the prompt
                    St.first = False
                    return
                times.append(time.perf_counter())
                toks.extend(value.flatten().tolist())

            def end(self):
                pass

        t0 = time.perf_counter()
        self._gen([ids], n, adapter, St())
        return t0, times, toks

    def batch(self, prompts, n, adapter):
        times: list[float] = []
        t0 = time.perf_counter()

        class St:
            first = True

            def put(self, value):
                if St.first:
                    St.first = False
                    return
                times.append(time.perf_counter())

            def end(self):
                pass

        # a padded static batch: what a batch of concurrent requests gets from plain generate
        self._gen(prompts, n, adapter, St())
        return [(times[0] - t0, times[-1] - t0, n) for _ in prompts]


def run_hf(inputs: dict, work: Path, variant: str) -> dict:
    _torch_threads()
    import torch

    dtype = "bfloat16" if variant.endswith("bf16") else "float32"
    peft, load_s = _hf_model(inputs, dtype)
    cache = "static" if variant.startswith("hf_static") else None
    extra: dict[str, Any] = {}
    compiled = variant == "hf_static_compile"
    if compiled:  # HF compiles the decode step (prefill stays eager); on CPU only when asked for all devices
        from transformers import CompileConfig

        cc = CompileConfig(mode="default", dynamic=False, fullgraph=False)
        cc._compile_all_devices = True
        extra["compile_config"] = cc
    s = HFGenerate(peft, cache, extra)
    s.batches = not compiled  # a new batch size would recompile: concurrent requests run one after another
    s.note = f"dtype {dtype}; cache {cache or 'dynamic'}; " + (
        "decode step torch.compile'd by generate (compile_config), requests sequential" if compiled else
        "concurrency = one padded static batch (not continuous)")
    if compiled:
        t = time.perf_counter()
        s.stream(inputs["prompts"]["short"][0], 4, "task")
        s.note += f"; first call (compilation) {time.perf_counter() - t:.1f}s"
        load_s += time.perf_counter() - t
    lora = lora_check(s, inputs, ["task"] if compiled else [None, "task", "task2"], False,
                      "PEFT set_adapter / disable_adapter")
    res = measure(s, inputs, "task", load_s, lora=lora)
    res["versions"] = versions("torch", "transformers", "peft")
    return res


def run_hf_cb(inputs: dict, work: Path) -> dict:
    _torch_threads()
    import torch
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    peft, load_s = _hf_model(inputs, os.environ.get("ENGINE_BENCH_CB_DTYPE", "float32"))
    peft.set_adapter("task")
    inner = peft.base_model.model  # LoRA layers injected in place: the active adapter applies
    t = time.perf_counter()
    gen = GenerationConfig(max_new_tokens=DECODE_TOKENS, do_sample=False, eos_token_id=-1, pad_token_id=0)
    cb = ContinuousBatchingConfig(page_size=64, num_blocks=128, max_batch_tokens=512, max_requests_per_batch=8,
                                  allow_block_sharing=False, use_cuda_graph=False)
    manager = inner.init_continuous_batching(generation_config=gen, continuous_batching_config=cb)
    manager.start()
    load_s += time.perf_counter() - t
    lock = threading.Lock()

    class S(Streams):
        batches = True
        note = "paged KV cache, one active adapter for the whole manager (no per-request adapter)"

        def batch(self, prompts, n, adapter):
            t0 = time.perf_counter()
            with lock:
                rids = [manager.add_request(p, max_new_tokens=n, record_timestamps=True, eos_token_id=-1)
                        for p in prompts]
            results = {}
            deadline = time.time() + 120
            while len(results) < len(rids) and time.time() < deadline:
                r = manager.get_result(timeout=1)
                if r is not None and r.is_finished():
                    results[r.request_id] = r
            out = []
            for rid in rids:
                r = results[rid]
                ts = r.timestamps or [r.lifespan[1]]
                out.append((ts[0] - t0, ts[-1] - t0, len(r.generated_tokens)))
                self.last = r
            return out

        def stream(self, ids, n, adapter):
            t0 = time.perf_counter()
            self.batch([ids], n, adapter)
            r = self.last
            return t0, list(r.timestamps or [r.lifespan[1]]), list(r.generated_tokens)

    s = S()
    res: dict[str, Any]
    try:
        s.stream(inputs["prompts"]["short"][0], 2, "task")
        lora = lora_check(s, inputs, ["task"], False, "PEFT adapter active on the model the manager runs")
        res = measure(s, inputs, "task", load_s, lora=lora)
        res["timestamps_note"] = "token times from record_timestamps (perf_counter)"
    finally:
        manager.stop(block=True, timeout=10)
    res["versions"] = versions("torch", "transformers", "peft")
    return res


# ----------------------------------------------------------------------------------------------- OpenVINO GenAI
def run_openvino(inputs: dict, work: Path, fmt: str = "int8", path: str | None = None) -> dict:
    """``path``: an optimum-intel export folder (default WORK/ov/FMT) or a .gguf file (GenAI's own GGUF reader)."""
    import openvino as ov
    import openvino_genai as og

    path = path or str(work / "ov" / fmt)
    props = {"INFERENCE_NUM_THREADS": THREADS}
    t = time.perf_counter()
    adapters = {k: og.Adapter(v + "/adapter_model.safetensors") for k, v in inputs["adapters"].items()}
    adapter_load_s = time.perf_counter() - t
    t = time.perf_counter()
    sched = og.SchedulerConfig()
    sched.cache_size = 1  # GB of KV cache
    sched.max_num_seqs = 8
    sched.max_num_batched_tokens = 512
    sched.enable_prefix_caching = False
    sched.dynamic_split_fuse = True
    pipe = og.ContinuousBatchingPipeline(path, sched, "CPU", {**props, "adapters": og.AdapterConfig(
        list(adapters.values()))})
    load_s = time.perf_counter() - t
    rid = [0]

    def cfg(n, adapter):
        g = og.GenerationConfig()
        g.max_new_tokens, g.min_new_tokens, g.ignore_eos, g.do_sample = n, n, True, False
        g.adapters = og.AdapterConfig(adapters[adapter], 1.0) if adapter else og.AdapterConfig()
        return g

    current = ["-"]

    def use(adapter):
        """The pipeline has ONE adapter configuration at a time: generate() applies its first request's
        GenerationConfig.adapters to the model; add_request()/step() use whatever was applied last."""
        if current[0] != adapter:
            pipe.generate([ov.Tensor(__import__("numpy").array([inputs["prompts"]["short"][0]], dtype="int64"))],
                          [cfg(1, adapter)])
            current[0] = adapter

    class S(Streams):
        batches = True
        note = (f"ContinuousBatchingPipeline, {fmt}; all adapters registered at load (AdapterConfig in properties); "
                "adapter switched between batches by a 1-token generate() (no per-request adapter inside a batch)")

        def batch(self, prompts, n, adapter):
            use(adapter)
            t0 = time.perf_counter()
            handles = []
            for p in prompts:
                rid[0] += 1
                handles.append(pipe.add_request(rid[0], ov.Tensor(__import__("numpy").array([p], dtype="int64")),
                                                cfg(n, adapter)))
            first: list[float | None] = [None] * len(handles)
            end: list[float | None] = [None] * len(handles)
            toks: list[list[int]] = [[] for _ in handles]
            self.token_times = [[] for _ in handles]
            while pipe.has_non_finished_requests():
                pipe.step()
                now = time.perf_counter()
                for i, h in enumerate(handles):
                    if h.can_read():
                        for out in h.read().values():
                            toks[i].extend(out.generated_ids)
                            self.token_times[i].extend([now] * len(out.generated_ids))
                        if first[i] is None and toks[i]:
                            first[i] = now
                    if end[i] is None and h.get_status() != og.GenerationStatus.RUNNING and not h.can_read():
                        end[i] = now
            now = time.perf_counter()
            self.toks = toks
            return [(f - t0 if f else now - t0, (e or now) - t0, len(tk)) for f, e, tk in zip(first, end, toks)]

        def stream(self, ids, n, adapter):
            t0 = time.perf_counter()
            self.batch([ids], n, adapter)
            return t0, self.token_times[0], self.toks[0]

    s = S()
    lora = lora_check(s, inputs, [None, "task", "task2"], False,
                      "openvino_genai.Adapter reads the PEFT safetensors; AdapterConfig per request in CB")
    lora["adapter_load_s"] = r1(adapter_load_s, 2)
    res = measure(s, inputs, "task", load_s, lora=lora)
    # mixed adapters in one batch: 8 requests, alternating base/task/task2 (per-request GenerationConfig.adapters)
    use(None)
    t0 = time.perf_counter()
    hs = []
    for i in range(8):
        rid[0] += 1
        hs.append(pipe.add_request(rid[0], ov.Tensor(__import__("numpy").array([inputs["prompts"]["rag"][0]],
                                                                               dtype="int64")),
                                   cfg(REF_TOKENS, [None, "task", "task2"][i % 3])))
    outs: list[list[int]] = [[] for _ in hs]
    while pipe.has_non_finished_requests():
        pipe.step()
        for i, h in enumerate(hs):
            if h.can_read():
                for o in h.read().values():
                    outs[i].extend(o.generated_ids)
    res["mixed_adapter_batch"] = {"note": "rows base/task/task2 alternating via add_request; agree_of_16 per row "
                                          "with its own adapter's reference (0 = adapter not applied)",
                                  "wall_s": r1(time.perf_counter() - t0, 2), "agree_of_16": [
        agreement(outs[i], inputs["reference"][["base", "task", "task2"][i % 3]]) for i in range(8)]}
    # single stream through LLMPipeline (what a one-request server would use)
    try:
        t = time.perf_counter()
        llm = og.LLMPipeline(path, "CPU", **props, adapters=og.AdapterConfig(adapters["task"]))
        llm_load = time.perf_counter() - t
        times: list[float] = []

        def streamer(sub: str) -> bool:
            times.append(time.perf_counter())
            return False

        g = cfg(DECODE_TOKENS, "task")
        tok = llm.get_tokenizer()
        text = tok.decode(inputs["prompts"]["rag"][0])
        rates = []
        for _ in range(2):
            times.clear()
            r = llm.generate(og.TokenizedInputs(ov.Tensor(__import__("numpy").array([inputs["prompts"]["rag"][0]],
                                                                                     dtype="int64")),
                                                ov.Tensor(__import__("numpy").ones(
                                                    (1, len(inputs["prompts"]["rag"][0])), dtype="int64"))), g,
                             streamer=streamer)
            pm = r.perf_metrics
            rates.append(1000.0 / pm.get_tpot().mean)
        ti = og.TokenizedInputs(ov.Tensor(__import__("numpy").array([inputs["prompts"]["rag"][0]], dtype="int64")),
                                ov.Tensor(__import__("numpy").ones((1, len(inputs["prompts"]["rag"][0])),
                                                                   dtype="int64")))
        lt = {a or "base": list(llm.generate(ti, cfg(REF_TOKENS, a)).tokens[0]) for a in (None, "task")}
        res["llm_pipeline"] = {"load_s": r1(llm_load, 2), "decode_tok_s_tpot": r1(statistics.median(rates)),
                               "ttft_ms_rag": r1(pm.get_ttft().mean), "text_len": len(text),
                               "adapter_changes_output": lt["task"] != lt["base"],
                               "agree_of_16": {k: agreement(v, inputs["reference"][k]) for k, v in lt.items()}}
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        res["llm_pipeline"] = {"error": f"{type(e).__name__}: {e}"[:400]}
    res["versions"] = versions("openvino", "openvino-genai", "openvino-tokenizers", "optimum-intel", "optimum")
    return res


# ----------------------------------------------------------------------------------------------- CTranslate2
def run_ctranslate2(inputs: dict, work: Path) -> dict:
    import ctranslate2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(inputs["base_dir"])
    t = time.perf_counter()
    gen = ctranslate2.Generator(str(work / "ct2" / "task_int8"), device="cpu", compute_type="int8",
                                intra_threads=THREADS, inter_threads=1)
    load_s = time.perf_counter() - t

    def toks_of(ids):
        return tok.convert_ids_to_tokens(ids)

    class S(Streams):
        batches = True
        note = "int8 merged model (adapter merged at conversion: one converted copy per adapter); generate_batch " \
               "= static batch, no continuous batching"

        def stream(self, ids, n, adapter):
            times, out = [], []
            t0 = time.perf_counter()
            for step in gen.generate_tokens(toks_of(ids), max_length=n, sampling_topk=1, end_token=[]):
                times.append(time.perf_counter())
                out.append(step.token_id)
            return t0, times, out

        def batch(self, prompts, n, adapter):
            t0 = time.perf_counter()
            res = gen.generate_batch([toks_of(p) for p in prompts], max_length=n, min_length=n, sampling_topk=1,
                                     include_prompt_in_result=False, end_token=[])
            end = time.perf_counter() - t0
            return [(end, end, len(r.sequences_ids[0])) for r in res]

    s = S()
    _, _, toks = s.stream(inputs["prompts"]["rag"][0], REF_TOKENS, None)
    lora = {"runtime": False, "base_copy_per_adapter": True,
            "how": "no LoRA support: each adapter merged into its own converted copy (this copy = task)",
            "agree_of_16": {"task (merged)": agreement(toks, inputs["reference"]["task"])}}
    res = measure(s, inputs, None, load_s, lora=lora)
    res["ttft_note"] = "batch() TTFT = end of batch (generate_batch does not stream)"
    res["versions"] = versions("ctranslate2")
    return res


# ----------------------------------------------------------------------------------------------- llama.cpp
def run_llama_cpp(inputs: dict, work: Path, gguf: str, label: str) -> dict:
    import ctypes

    import numpy as np

    import llama_cpp
    from llama_cpp import Llama

    lora_files = {k: work / "gguf" / f"lora-{k}.gguf" for k in inputs["adapters"]}
    t = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_threads=THREADS, n_threads_batch=THREADS,
                verbose=False)
    model = llm._model.model
    # a context of our own for the batch API: 8 sequences (llama-server's parallel slots), one unified KV buffer
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 8192, 512, 512, 8
    cp.n_threads, cp.n_threads_batch, cp.kv_unified = THREADS, THREADS, True
    ctx = llama_cpp.llama_init_from_model(model, cp)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    loras = {k: llama_cpp.llama_adapter_lora_init(model, str(v).encode()) for k, v in lora_files.items()
             if v.is_file()}
    lora_load_s = time.perf_counter() - t
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    mem = llama_cpp.llama_get_memory(ctx)
    current = ["-"]

    def use(adapter):
        if current[0] == adapter:
            return
        if adapter is None:
            assert llama_cpp.llama_set_adapters_lora(ctx, None, 0, None) == 0
        else:
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(loras[adapter])
            assert llama_cpp.llama_set_adapters_lora(ctx, arr, 1, (ctypes.c_float * 1)(1.0)) == 0
        current[0] = adapter

    class S(Streams):
        batches = True
        note = (f"{label}; LoRA GGUFs (convert_lora_to_gguf) loaded once on the model and switched per context "
                "(llama_set_adapters_lora); concurrency: several sequences in one llama_decode (llama.cpp's batch "
                "API, as llama-server's parallel slots; a Python loop here, greedy argmax in numpy)")

        def batch(self, prompts, n, adapter):
            use(adapter)
            llama_cpp.llama_memory_clear(mem, True)
            t0 = time.perf_counter()
            k = len(prompts)
            batch = llama_cpp.llama_batch_init(512, 0, k)
            first: list[float] = [0.0] * k
            toks: list[list[int]] = [[] for _ in range(k)]
            self.times = [[] for _ in range(k)]
            pos = [0] * k
            try:
                for s_id, p in enumerate(prompts):  # prefill, chunks of n_batch, logits at the last prompt token
                    for start in range(0, len(p), 512):
                        chunk = p[start:start + 512]
                        batch.n_tokens = len(chunk)
                        for j, tk in enumerate(chunk):
                            batch.token[j] = tk
                            batch.pos[j] = start + j
                            batch.n_seq_id[j] = 1
                            batch.seq_id[j][0] = s_id
                            batch.logits[j] = start + j == len(p) - 1
                        assert llama_cpp.llama_decode(ctx, batch) == 0
                    pos[s_id] = len(p)
                    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, len(chunk) - 1),
                                                   shape=(n_vocab,))
                    toks[s_id].append(int(logits.argmax()))
                    first[s_id] = time.perf_counter()
                    self.times[s_id].append(first[s_id])
                while any(len(t) < n for t in toks):
                    live = [s for s in range(k) if len(toks[s]) < n]
                    batch.n_tokens = len(live)
                    for j, s_id in enumerate(live):
                        batch.token[j] = toks[s_id][-1]
                        batch.pos[j] = pos[s_id]
                        batch.n_seq_id[j] = 1
                        batch.seq_id[j][0] = s_id
                        batch.logits[j] = True
                        pos[s_id] += 1
                    assert llama_cpp.llama_decode(ctx, batch) == 0
                    now = time.perf_counter()
                    for j, s_id in enumerate(live):
                        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, j), shape=(n_vocab,))
                        toks[s_id].append(int(logits.argmax()))
                        self.times[s_id].append(now)
            finally:
                llama_cpp.llama_batch_free(batch)
            self.toks = toks
            return [(f - t0, ts[-1] - t0, len(tk)) for f, ts, tk in zip(first, self.times, toks)]

        def stream(self, ids, n, adapter):
            t0 = time.perf_counter()
            self.batch([ids], n, adapter)
            return t0, self.times[0], self.toks[0]

    s = S()
    if loras:
        lora = lora_check(s, inputs, [None, *loras], False,
                          "GGUF LoRA (llama_adapter_lora_init) on the base GGUF, no copy of the base; set per "
                          "context (llama_set_adapters_lora), so one adapter set per batch, not per sequence")
        lora["adapter_load_s"] = r1(lora_load_s, 2)
    else:
        lora = {"runtime": None, "how": "no LoRA GGUF was converted"}
    res = measure(s, inputs, "task" if "task" in loras else None, load_s, lora=lora)
    # the high-level API's own single stream (what serve/llamacpp.py uses), base model, for comparison
    try:
        times = []
        t0 = time.perf_counter()
        for i, _ in enumerate(llm.generate(inputs["prompts"]["rag"][0], temp=0.0, top_k=1, min_p=0.0,
                                           repeat_penalty=1.0, reset=True)):
            times.append(time.perf_counter())
            if i + 1 >= DECODE_TOKENS:
                break
        res["high_level_generate_base"] = {"ttft_ms": r1((times[0] - t0) * 1000),
                                           "decode_tok_s": r1((len(times) - 1) / (times[-1] - times[0]))}
    except Exception as e:  # noqa: BLE001
        res["high_level_generate_base"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    res["gguf"] = gguf
    res["gguf_mb"] = r1(Path(gguf).stat().st_size / 2**20)
    res["versions"] = versions("llama-cpp-python")
    return res


CANDIDATES: dict[str, Callable[[dict, Path], dict]] = {
    "embedded": run_embedded,
    "hf_dynamic_fp32": lambda i, w: run_hf(i, w, "hf_dynamic_fp32"),
    "hf_static": lambda i, w: run_hf(i, w, "hf_static"),
    "hf_static_compile": lambda i, w: run_hf(i, w, "hf_static_compile"),
    "hf_cb": run_hf_cb,
    "openvino_genai": run_openvino,
    "openvino_genai_fp16": lambda i, w: run_openvino(i, w, "fp16"),
    "openvino_genai_gguf_q4_1": lambda i, w: run_openvino(i, w, "gguf Q4_1 (packaged, read directly)",
                                                          i["gguf_q4_1"]),
    "ctranslate2": run_ctranslate2,
    "llama_cpp_q4_1": lambda i, w: run_llama_cpp(i, w, i["gguf_q4_1"], "packaged Q4_1 GGUF"),
    "llama_cpp_f16": lambda i, w: run_llama_cpp(i, w, str(w / "gguf" / "base-f16.gguf"), "F16 GGUF of the base"),
}


def measure_one(name: str, work: Path) -> None:
    inputs = json.loads((work / "inputs.json").read_text())
    out = work / ("smoke" if os.environ.get("ENGINE_BENCH_SMOKE") else "results")
    out.mkdir(exist_ok=True)
    t = time.perf_counter()
    try:
        res = CANDIDATES[name](inputs, work)
    except Exception as e:  # noqa: BLE001 - a candidate that fails is a result too
        import traceback

        res = {"error": f"{type(e).__name__}: {e}"[:600], "traceback": traceback.format_exc()[-1500:]}
    res["process_s"] = r1(time.perf_counter() - t)
    res["python"] = sys.executable
    res["load_avg_after"] = list(os.getloadavg())
    (out / f"{name}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


def merge(work: Path, extra: dict | None = None) -> None:
    prep = json.loads((work / "prepare.json").read_text()) if (work / "prepare.json").is_file() else {}
    doc: dict[str, Any] = {"machine": machine_info(), "settings": {
        "threads": THREADS, "decode_tokens": DECODE_TOKENS, "aggregate_tokens": AGG_TOKENS,
        "short_tokens": SHORT_TOKENS, "concurrency": list(CONCURRENCY), "greedy": True, "eos_ignored": True,
        "prompt_tokens": prep.get("prompt_tokens"),
        "adapter": "PEFT LoRA r=8, alpha=8, targets=" + ",".join(LORA_TARGETS) + ", init_lora_weights=False, "
                   "B scaled by " + str(LORA_B_SCALE) + " (task) and 4x that (task2)"}, "prepare": prep, "candidates": {}}
    notes = work / "notes.json"
    if notes.is_file():
        doc["notes"] = json.loads(notes.read_text())
    for f in sorted((work / "results").glob("*.json")):
        doc["candidates"][f.stem] = json.loads(f.read_text())
    if extra:
        doc.update(extra)
    RESULTS.write_text(json.dumps(doc, indent=2))
    print(f"wrote {RESULTS}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["prepare", "measure", "all", "merge"])
    ap.add_argument("candidate", nargs="?")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--cand-python", default=sys.executable, help="interpreter with the candidate engines")
    ap.add_argument("--export-python", default=None, help="interpreter with optimum-intel (OpenVINO export)")
    ap.add_argument("--llama-src", default=None, help="llama.cpp source folder (its convert_*.py scripts)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per candidate process")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.work, a.cand_python, a.export_python, a.llama_src)
    elif a.cmd == "measure":
        measure_one(a.candidate, a.work)
    elif a.cmd == "merge":
        merge(a.work)
    else:
        names = [a.candidate] if a.candidate else list(CANDIDATES)
        for name in names:
            py = sys.executable if name in ("embedded",) or name.startswith("hf_") else a.cand_python
            print(f"== {name} ({py})", flush=True)
            try:
                subprocess.run([py, __file__, "measure", name, "--work", str(a.work)], timeout=a.timeout,
                               stdout=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                (a.work / "results").mkdir(exist_ok=True)
                (a.work / "results" / f"{name}.json").write_text(json.dumps(
                    {"error": f"did not finish in {a.timeout}s"}))
        merge(a.work)


if __name__ == "__main__":
    main()
