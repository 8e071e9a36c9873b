"""Why the default CPU engine uses onnxruntime-genai only for a lone request: its speed and its batching, measured.

On the project's base model (SmolLM2-135M-Instruct), 2 compute threads for every engine:
  * single-stream greedy decode of 64 tokens from the same chat prompt's token ids: onnxruntime-genai on the int8
    ONNX its model builder writes (as `onnxruntime_engine.served_onnx` converts) against llama.cpp on the Q8_0 GGUF
    of the same base by verticalize's own writer (`served_gguf`), alternating (order reversed every round) so that
    load from other processes falls on both alike; tokens/s = (n - 1) / (last token's time - first token's);
  * its request engine (`og.Engine`), which on a CPU (no paged model) batches statically: 8 requests for 3-token
    answers submitted at once against the same 8 answered one after another by `og.Generator` (p50 / max latency,
    total; alternating too); then a new 12-token request every 2 engine steps, whose tokens per step show that a
    request waits for the running batch to end instead of joining it. Also recorded: overlaying
    engine.static_batching.max_batch_size=8 changes the reported capability, not the batches.

    .venv/bin/python bench/onnxruntime_probe.py              # ~1-2 minutes on 2 cores, plus a one-off conversion
    .venv/bin/python bench/onnxruntime_probe.py --rounds 9 --work /tmp/somewhere

The int8 ONNX model and the GGUF are written under --work once and reused. Writes bench/results/onnxruntime_probe.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np
import onnxruntime_genai as og

RESULTS = Path(__file__).parent / "results" / "onnxruntime_probe.json"
THREADS, NEW_TOKENS, SHORT_TOKENS, CONCURRENT = 2, 64, 3, 8
STAGGER_REQUESTS, STAGGER_TOKENS, STAGGER_EVERY = 6, 12, 2
SYSTEM = "You are a helpful assistant that answers concisely."
DECODE_PROMPT = ("Explain in a few sentences why the sky looks blue during the day and red at sunset, and mention "
                 "Rayleigh scattering.")
TOPICS = ["the moon", "volcanoes", "honey bees", "the printing press", "glaciers", "black holes", "coffee",
          "the Roman empire"]


def chat_ids(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                                        add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def convert_int8(base_dir: Path, out: Path) -> float:
    """The base converted by onnxruntime-genai's model builder in-process, as served_onnx does; 0 s if reused."""
    if (out / "genai_config.json").is_file():
        return 0.0
    from onnxruntime_genai.models import builder

    t0, partial, cache = time.perf_counter(), out.with_name(out.name + ".partial"), str(out.parent / "builder-cache")
    shutil.rmtree(partial, ignore_errors=True)
    output = io.StringIO()  # the builder's progress: shown only if it fails
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            options = builder.parse_extra_options(None, str(base_dir), str(partial), "int8", "cpu", cache, None)
            builder.create_model(None, str(base_dir), str(partial), "int8", "cpu", cache, **options)
    except Exception:
        print(output.getvalue()[-2000:], file=sys.stderr)
        raise
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(partial, out)
    return round(time.perf_counter() - t0, 1)


def ort_model(path: Path, max_batch_size: int | None = None):
    config = og.Config(str(path))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": THREADS,
                                                                         "inter_op_num_threads": 1}}},
                               **({"engine": {"static_batching": {"max_batch_size": max_batch_size}}}
                                  if max_batch_size else {})}))
    return og.Model(config)


def generate_ort(model, ids: list[int], tokens: int, force: bool):
    """Greedy tokens, one by one (``force``: exactly ``tokens``, end of sequence ignored)."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + tokens, do_sample=False, min_length=len(ids) + tokens * force)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(ids, dtype=np.int32))  # the prefill
    while not generator.is_done():
        generator.generate_next_token()
        yield int(generator.get_next_tokens()[0])


def decode_figures(tokens) -> dict:
    """Decode tokens/s and first-token time of a stream of tokens, timed as they arrive."""
    t0, times = time.perf_counter(), [time.perf_counter() for _ in tokens()]
    return {"decode_tok_s": round((len(times) - 1) / (times[-1] - times[0]), 1),
            "first_token_ms": round((times[0] - t0) * 1000, 1), "tokens": len(times)}


def serial(model, prompts: list[list[int]]) -> dict:
    t0, outs, done = time.perf_counter(), [], []
    for ids in prompts:
        outs.append(list(generate_ort(model, ids, SHORT_TOKENS, force=False)))
        done.append(time.perf_counter() - t0)
    return {"outputs": outs, "done": done, "total": time.perf_counter() - t0}


def engine_run(model, prompts: list[list[int]], tokens: int, every: int | None = None) -> dict:
    """The prompts through one og.Engine: all at once (``every`` None), or one more every ``every`` engine steps
    and whenever the engine is idle. Outputs, finish times, total, tokens per step, the step each was submitted."""
    engine = og.Engine(model)
    buffer, requests, r = engine.create_event_buffer(256), [], {"outputs": [], "done": {}, "per_step": [],
                                                                "submitted_at_step": []}
    t0 = time.perf_counter()

    def submit() -> None:
        request = engine.create_request()
        turn = og.TurnOptions(request)
        turn.set_max_generated_tokens(tokens)
        turn.set_do_sample(False)
        request.begin_turn(np.array(prompts[len(requests)], dtype=np.int32), turn)
        requests.append(request)
        r["outputs"].append([])
        r["submitted_at_step"].append(len(r["per_step"]))

    while len(requests) < (len(prompts) if every is None else 1):
        submit()
    while engine.has_pending_requests() or len(requests) < len(prompts):
        if not engine.has_pending_requests():
            submit()
        n = 0
        for event in engine.run(buffer):
            i = next(k for k, q in enumerate(requests) if q is event.request)
            if int(event.flags) & int(og.EngineEventFlags.TOKEN):
                r["outputs"][i].append(int(event.token))
                n += 1
            if int(event.flags) & int(og.EngineEventFlags.TURN_FINISHED):
                r["done"][i] = time.perf_counter() - t0
        r["per_step"].append(n)
        if every and len(requests) < len(prompts) and len(r["per_step"]) % every == 0:
            submit()
    r["done"], r["total"] = [r["done"][i] for i in range(len(prompts))], time.perf_counter() - t0
    r["configured_max_batch_size"] = engine.get_capabilities().configured_max_batch_size
    return r


def latency(r: dict) -> dict:
    return {"p50_ms": round(statistics.median(r["done"]) * 1000, 1), "max_ms": round(max(r["done"]) * 1000, 1),
            "total_ms": round(r["total"] * 1000, 1), **({"tokens_per_step": r["per_step"]} if "per_step" in r else {})}


def alternate(runs: dict, rounds: int, figures) -> list[dict]:
    """``rounds`` rounds of every run, the order reversed every other round."""
    orders = [list(runs)[::1 if i % 2 == 0 else -1] for i in range(rounds)]
    return [{"order": order, **{name: figures(runs[name]) for name in order}} for order in orders]


def medians(rows: list[dict], names, keys) -> dict:
    return {n: {k: round(statistics.median(row[n][k] for row in rows), 1) for k in keys} for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/verticalize-bench/onnxruntime_genai"),
                        help="where the int8 ONNX model and the GGUF are written once and reused")
    args = parser.parse_args()
    started, load_start = time.perf_counter(), os.getloadavg()
    import llama_cpp
    import onnxruntime
    from transformers import AutoTokenizer

    from verticalize.config import load_config
    from verticalize.models import resolve_base
    from verticalize.openvino_engine import served_gguf

    cfg = load_config(None, [])
    base = resolve_base(cfg.model)
    args.work.mkdir(parents=True, exist_ok=True)
    onnx_dir = args.work / "onnx-int8"
    convert_s = convert_int8(base, onnx_dir)
    gguf = served_gguf(cfg.model, None, args.work / "gguf", "q8_0")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = chat_ids(tokenizer, DECODE_PROMPT)
    short = [chat_ids(tokenizer, f"Explain in a few sentences the most interesting facts about {t}, and give one "
                                 "example that a child could understand easily.") for t in TOPICS[:CONCURRENT]]

    model = ort_model(onnx_dir)  # 1. single-stream decode, alternating
    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=THREADS, n_threads_batch=THREADS, n_ctx=512, n_batch=512,
                          verbose=False)
    engines = {"ort_int8": lambda: generate_ort(model, ids, NEW_TOKENS, force=True),
               "llama_cpp_q8_0": lambda: islice(llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0,
                                                             reset=True), NEW_TOKENS)}
    for tokens in engines.values():
        list(tokens())  # warm-up
    rows = alternate(engines, args.rounds, decode_figures)
    for row in rows:
        row["ratio"] = round(row["ort_int8"]["decode_tok_s"] / row["llama_cpp_q8_0"]["decode_tok_s"], 3)
    med = medians(rows, engines, ("decode_tok_s", "first_token_ms"))
    decode = {"rounds": rows, "median": med,
              "ratio_ort_over_llama_median_of_rounds": round(statistics.median(r["ratio"] for r in rows), 3),
              "ratio_ort_over_llama_of_medians": round(med["ort_int8"]["decode_tok_s"]
                                                       / med["llama_cpp_q8_0"]["decode_tok_s"], 3)}
    llm.close()

    serial(model, short)  # 2. static batching; warm-up first
    runs = {"serial_generator": lambda: serial(model, short), "engine": lambda: engine_run(model, short, SHORT_TOKENS)}
    outputs_identical = []
    rows = alternate(runs, args.rounds, lambda run: run())
    for row in rows:
        outputs_identical.append(row["serial_generator"]["outputs"] == row["engine"]["outputs"])
        max_batch = row["engine"]["configured_max_batch_size"]
        row.update({name: latency(row[name]) for name in runs})
    stagger = engine_run(model, short[:STAGGER_REQUESTS], STAGGER_TOKENS, STAGGER_EVERY)
    overlay8 = engine_run(ort_model(onnx_dir, CONCURRENT), short, SHORT_TOKENS)
    batching = {"configured_max_batch_size": max_batch, "outputs_identical": outputs_identical, "rounds": rows,
                "median": medians(rows, runs, ("p50_ms", "max_ms", "total_ms")),
                "staggered": {"requests": STAGGER_REQUESTS, "tokens_each": STAGGER_TOKENS,
                              "new_request_every_steps": STAGGER_EVERY, "tokens_per_step": stagger["per_step"],
                              "submitted_at_step": stagger["submitted_at_step"],
                              "finish_ms": [round(d * 1000, 1) for d in stagger["done"]]},
                "overlay_max_batch_size_8": {"configured_max_batch_size": overlay8["configured_max_batch_size"],
                                             "tokens_per_step": overlay8["per_step"], **latency(overlay8)}}
    print(f"static batching: {batching['median']}; staggered tokens per step {stagger['per_step']}", file=sys.stderr)

    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_start": load_start,
                    "load_avg_at_end": os.getloadavg()},
        "versions": {"onnxruntime_genai": og.__version__, "onnxruntime": onnxruntime.__version__,
                     "llama_cpp_python": llama_cpp.__version__},
        "settings": {"base_dir": str(base), "threads": THREADS, "new_tokens": NEW_TOKENS, "rounds": args.rounds,
                     "decode_prompt_tokens": len(ids), "short_prompt_tokens": [len(p) for p in short],
                     "short_answer_tokens": SHORT_TOKENS, "concurrent_requests": CONCURRENT,
                     "ort": f"onnxruntime-genai, int8 ONNX by its model builder (precision int8, execution provider "
                            f"cpu, default extra options), intra_op_num_threads {THREADS}, greedy, {NEW_TOKENS} tokens "
                            "forced (min_length)", "ort_model": str(onnx_dir), "ort_convert_s": convert_s,
                     "baseline": f"llama.cpp (llama-cpp-python {llama_cpp.__version__}), Q8_0 GGUF of the base written "
                                 f"by verticalize's writer (openvino_engine.served_gguf, no adapter), n_threads "
                                 f"{THREADS}, n_threads_batch {THREADS}, greedy (temp 0, top_k 1, repeat_penalty 1.0), "
                                 f"stopped at {NEW_TOKENS} tokens", "baseline_gguf": str(gguf),
                     "baseline_gguf_mb": round(gguf.stat().st_size / 1e6, 1)},
        "decode": decode, "static_batching": batching, "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"decode tok/s median: ort int8 {med['ort_int8']['decode_tok_s']}, llama.cpp Q8_0 "
          f"{med['llama_cpp_q8_0']['decode_tok_s']}; ratio ort/llama {decode['ratio_ort_over_llama_median_of_rounds']}"
          f" (median of rounds), {decode['ratio_ort_over_llama_of_medians']} (of medians)\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
