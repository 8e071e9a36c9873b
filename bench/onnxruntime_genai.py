"""Why the default CPU engine uses onnxruntime-genai only for a lone request: its speed and its batching, measured.

On the project's base model (SmolLM2-135M-Instruct), 2 compute threads for every engine:
  * single-stream greedy decode, 64 new tokens from the same chat prompt's token ids: onnxruntime-genai on the int8
    ONNX model its own builder writes (as `onnxruntime_engine.served_onnx` converts it) against llama.cpp
    (llama-cpp-python) on the Q8_0 GGUF verticalize's own writer makes of the same base (`served_gguf`). The two
    alternate, the order reversed every round, so that load from other processes falls on both alike; decode
    tokens/s = (n - 1) / (time of last token - time of first token); ratio ort/llama per round and of the medians;
  * its request engine (`og.Engine`): on a CPU the model is not paged, so it batches statically. 8 requests for
    3-token answers submitted at once to the engine (at its default max batch size and at 8) against the same 8
    answered one after another by `og.Generator` (p50 / max latency from submission, total); then a staggered
    submission (a new 12-token request every 2 engine steps) whose tokens per engine step show that a request
    does not join a running batch but waits for it to end.

    .venv/bin/python bench/onnxruntime_genai.py              # ~2 minutes on 2 cores, plus a one-off conversion
    .venv/bin/python bench/onnxruntime_genai.py --rounds 9 --work /tmp/somewhere

The int8 ONNX model and the GGUF are written under --work once and reused. Writes bench/results/onnxruntime_genai.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "onnxruntime_genai.json"
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
    """The base converted by onnxruntime-genai's model builder, in-process, as served_onnx does; 0 s if reused."""
    if (out / "genai_config.json").is_file():
        return 0.0
    from onnxruntime_genai.models import builder

    t0, partial = time.perf_counter(), out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cache = str(out.parent / "builder-cache")
    options = builder.parse_extra_options(None, str(base_dir), str(partial), "int8", "cpu", cache, None)
    builder.create_model(None, str(base_dir), str(partial), "int8", "cpu", cache, **options)
    shutil.rmtree(cache, ignore_errors=True)
    os.replace(partial, out)
    return round(time.perf_counter() - t0, 1)


def ort_model(og, path: Path, max_batch_size: int | None = None):
    config = og.Config(str(path))
    overlay: dict = {"model": {"decoder": {"session_options": {"intra_op_num_threads": THREADS,
                                                               "inter_op_num_threads": 1}}}}
    if max_batch_size:
        overlay["engine"] = {"static_batching": {"max_batch_size": max_batch_size}}
    config.overlay(json.dumps(overlay))
    return og.Model(config)


def generate_ort(og, model, ids: list[int], tokens: int, force: bool) -> tuple[list[int], list[float]]:
    """Greedy tokens and the time each arrived (``force``: exactly ``tokens``, end of sequence ignored)."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + tokens, do_sample=False,
                              **({"min_length": len(ids) + tokens} if force else {}))
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(ids, dtype=np.int32))  # the prefill
    out, times = [], []
    while not generator.is_done():
        generator.generate_next_token()
        out.append(int(generator.get_next_tokens()[0]))
        times.append(time.perf_counter())
    return out, times


def generate_llama(llm, ids: list[int]) -> tuple[list[int], list[float]]:
    out, times = [], []
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0, reset=True):
        out.append(token)
        times.append(time.perf_counter())
        if len(out) >= NEW_TOKENS:
            break
    return out, times


def decode_figures(run) -> dict:
    t0 = time.perf_counter()
    out, times = run()
    return {"decode_tok_s": round((len(out) - 1) / (times[-1] - times[0]), 1),
            "first_token_ms": round((times[0] - t0) * 1000, 1), "tokens": len(out)}


def serial(og, model, prompts: list[list[int]]) -> tuple[list[list[int]], list[float], float]:
    t0, outs, done = time.perf_counter(), [], []
    for ids in prompts:
        outs.append(generate_ort(og, model, ids, SHORT_TOKENS, force=False)[0])
        done.append(time.perf_counter() - t0)
    return outs, done, time.perf_counter() - t0


def engine_run(og, model, prompts: list[list[int]], tokens: int, every: int | None = None):
    """The prompts through one og.Engine: all at once (``every`` None) or one more every ``every`` engine steps
    (and whenever the engine is idle). Returns outputs, finish times, total, tokens per step, submission steps."""
    engine = og.Engine(model)
    buffer = engine.create_event_buffer(256)
    requests, outs, done, per_step, submitted = [], [], {}, [], []
    t0 = time.perf_counter()

    def submit() -> None:
        request = engine.create_request()
        turn = og.TurnOptions(request)
        turn.set_max_generated_tokens(tokens)
        turn.set_do_sample(False)
        request.begin_turn(np.array(prompts[len(requests)], dtype=np.int32), turn)
        requests.append(request)
        outs.append([])
        submitted.append(len(per_step))

    while len(requests) < (len(prompts) if every is None else 1):
        submit()
    while engine.has_pending_requests() or len(requests) < len(prompts):
        if not engine.has_pending_requests():
            submit()
        n = 0
        for event in engine.run(buffer):
            i = next(k for k, r in enumerate(requests) if r is event.request)
            if int(event.flags) & int(og.EngineEventFlags.TOKEN):
                outs[i].append(int(event.token))
                n += 1
            if int(event.flags) & int(og.EngineEventFlags.TURN_FINISHED):
                done[i] = time.perf_counter() - t0
        per_step.append(n)
        if every and len(requests) < len(prompts) and len(per_step) % every == 0:
            submit()
    return outs, [done[i] for i in range(len(prompts))], time.perf_counter() - t0, per_step, submitted


def latency(done: list[float], total: float) -> dict:
    return {"p50_ms": round(statistics.median(done) * 1000, 1), "max_ms": round(max(done) * 1000, 1),
            "total_ms": round(total * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/verticalize-bench/onnxruntime_genai"),
                        help="where the int8 ONNX model and the GGUF are written once and reused")
    args = parser.parse_args()
    started, load_start = time.perf_counter(), os.getloadavg()
    import llama_cpp
    import onnxruntime
    import onnxruntime_genai as og
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

    # ---- single-stream decode, alternating
    model = ort_model(og, onnx_dir)
    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=THREADS, n_threads_batch=THREADS, n_ctx=512, n_batch=512,
                          verbose=False)
    engines = {"ort_int8": lambda: generate_ort(og, model, ids, NEW_TOKENS, force=True),
               "llama_cpp_q8_0": lambda: generate_llama(llm, ids)}
    for run in engines.values():
        run()  # warm-up
    rounds = []
    for r in range(args.rounds):
        row: dict = {"order": list(engines) if r % 2 == 0 else list(engines)[::-1]}
        for name in row["order"]:
            row[name] = decode_figures(engines[name])
        row["ratio"] = round(row["ort_int8"]["decode_tok_s"] / row["llama_cpp_q8_0"]["decode_tok_s"], 3)
        row["load_avg_1m"] = round(os.getloadavg()[0], 2)
        rounds.append(row)
        print(f"round {r}: ort int8 {row['ort_int8']['decode_tok_s']} tok/s, llama.cpp Q8_0 "
              f"{row['llama_cpp_q8_0']['decode_tok_s']} tok/s, ratio {row['ratio']}", file=sys.stderr, flush=True)
    medians = {name: {k: round(statistics.median(r[name][k] for r in rounds), 1)
                      for k in ("decode_tok_s", "first_token_ms")} for name in engines}
    decode = {"rounds": rounds, "median": medians,
              "ratio_ort_over_llama_median_of_rounds": round(statistics.median(r["ratio"] for r in rounds), 3),
              "ratio_ort_over_llama_of_medians": round(medians["ort_int8"]["decode_tok_s"]
                                                       / medians["llama_cpp_q8_0"]["decode_tok_s"], 3)}
    del llm

    # ---- og.Engine (static batching) against one after another
    batching: dict = {}
    serial(og, model, short)  # warm-up
    for label, size in (("engine_default_max_batch", None), ("engine_max_batch_8", CONCURRENT)):
        batched = ort_model(og, onnx_dir, size)
        figures = []
        for r in range(args.rounds):
            runs = {"serial": lambda: serial(og, model, short),
                    "engine": lambda: engine_run(og, batched, short, SHORT_TOKENS)}
            row = {}
            for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                outs, done, total, *steps = runs[name]()
                row[name] = {**latency(done, total), **({"tokens_per_step": steps[0]} if steps else {})}
                row[name + "_outputs"] = outs
            row["outputs_identical"] = row.pop("serial_outputs") == row.pop("engine_outputs")
            figures.append(row)
        batching[label] = {
            "configured_max_batch_size": og.Engine(batched).get_capabilities().configured_max_batch_size,
            "rounds": figures,
            "median": {name: {k: round(statistics.median(f[name][k] for f in figures), 1)
                              for k in ("p50_ms", "max_ms", "total_ms")} for name in ("serial", "engine")}}
        print(f"{label}: {batching[label]['median']}", file=sys.stderr, flush=True)
    stagger_prompts = short[:STAGGER_REQUESTS]
    _, done, total, per_step, submitted = engine_run(og, batched, stagger_prompts, STAGGER_TOKENS, STAGGER_EVERY)
    batching["staggered"] = {"requests": STAGGER_REQUESTS, "tokens_each": STAGGER_TOKENS,
                             "new_request_every_steps": STAGGER_EVERY, "max_batch_size": CONCURRENT,
                             "submitted_at_step": submitted, "tokens_per_step": per_step,
                             "finish_ms": [round(d * 1000, 1) for d in done], "total_ms": round(total * 1000, 1)}
    print(f"staggered: tokens per step {per_step}", file=sys.stderr, flush=True)

    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_start": load_start,
                    "load_avg_at_end": os.getloadavg()},
        "versions": {"onnxruntime_genai": og.__version__, "onnxruntime": onnxruntime.__version__,
                     "llama_cpp_python": llama_cpp.__version__},
        "settings": {"base_dir": str(base), "threads": THREADS, "new_tokens": NEW_TOKENS, "rounds": args.rounds,
                     "decode_prompt_tokens": len(ids), "short_prompt_tokens": [len(p) for p in short],
                     "short_answer_tokens": SHORT_TOKENS, "concurrent_requests": CONCURRENT,
                     "ort": f"onnxruntime-genai int8 ONNX (model builder, precision int8, execution provider cpu, "
                            f"default extra options), intra_op_num_threads {THREADS}, greedy; {NEW_TOKENS} tokens "
                            f"forced with min_length",
                     "ort_model": str(onnx_dir), "ort_convert_s": convert_s,
                     "baseline": f"llama.cpp (llama-cpp-python) on the Q8_0 GGUF of the base written by "
                                 f"verticalize's writer (openvino_engine.served_gguf, no adapter), n_threads "
                                 f"{THREADS}, n_threads_batch {THREADS}, greedy (temp 0, top_k 1, repeat_penalty "
                                 f"1.0), stopped at {NEW_TOKENS} tokens",
                     "baseline_gguf": str(gguf), "baseline_gguf_mb": round(gguf.stat().st_size / 1e6, 1)},
        "decode": decode, "static_batching": batching, "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"decode tok/s median: ort int8 {medians['ort_int8']['decode_tok_s']}, llama.cpp Q8_0 "
          f"{medians['llama_cpp_q8_0']['decode_tok_s']}; ratio {decode['ratio_ort_over_llama_median_of_rounds']} "
          f"(per round), {decode['ratio_ort_over_llama_of_medians']} (of medians)\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
