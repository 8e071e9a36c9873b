"""Does a greedy answer depend on the load? `serve.engine=split` sends a lone request to ONNX Runtime (int8 ONNX)
and concurrent ones to OpenVINO GenAI (Q8_0 GGUF), both over the same merged model; and a batching engine may
answer differently in a batch than alone (auto is OpenVINO alone since this bench). This answers a run's test set with every rung three times, the same prompts:
  onnxruntime   serve.engine=onnxruntime (every answer from ONNX Runtime, one at a time)
  openvino@8    serve.engine=openvino, 8 questions in flight (eval.batch_size=8, how the ladder runs)
  openvino@1    serve.engine=openvino, one question at a time (eval.batch_size=1, a client asking in turn)
and compares each pair.

    .venv/bin/python bench/engine_agreement.py            # the demo run (runs/demo: `make demo` first)
    .venv/bin/python bench/engine_agreement.py RUN_DIR --variants onnxruntime,openvino@8 --set KEY=VALUE

Writes bench/results/engine_agreement.json: per rung and pair, the identical answers and the mean |F1 difference| per
question; per rung and variant, F1, EM and the ladder's latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "engine_agreement.json"
VARIANTS = {"onnxruntime": ("serve.engine=onnxruntime", "eval.batch_size=8"),
            "openvino@8": ("serve.engine=openvino", "eval.batch_size=8"),
            "openvino@1": ("serve.engine=openvino", "eval.batch_size=1")}
PAIRS = (("onnxruntime", "openvino@8"), ("openvino@1", "openvino@8"), ("onnxruntime", "openvino@1"))


def _predictions(eval_dir: Path, rung: str) -> dict[str, dict]:
    path = eval_dir / f"predictions_{rung}.jsonl"
    return {row["id"]: row for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def main() -> None:
    from verticalize.artifacts import RunDir
    from verticalize.config import load_config
    from verticalize.evaluate.ladder import evaluate_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("runs/demo"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="a comma-separated subset of the variants")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every variant (e.g. serve.openvino_precision=f32)")
    args = parser.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    pairs = [p for p in PAIRS if set(p) <= set(variants)]
    run = RunDir(args.run)
    if not run.config_file.is_file():
        sys.exit(f"{run.root}: no run here (make demo writes runs/demo)")
    started = time.perf_counter()
    ladders, preds = {}, {}
    with tempfile.TemporaryDirectory(prefix="engine-agreement-") as tmp:
        for name, overrides in variants.items():
            cfg = load_config(run.config_file, [f"project.run_dir={run.root}", *overrides, *args.overrides])
            t0 = time.perf_counter()
            ladders[name] = evaluate_run(cfg, run, out_dir=Path(tmp) / name)
            preds[name] = {rung: _predictions(Path(tmp) / name, rung) for rung in ladders[name]["rungs"]}
            print(f"[bench] ladder {name} ({', '.join(overrides)}): {time.perf_counter() - t0:.0f} s", flush=True)
    per_rung = {}
    first = next(iter(variants))
    for rung in ladders[first]["rungs"]:
        variants = {name: {"f1": round(ladders[name]["rungs"][rung]["f1"], 3),
                           "exact_match": round(ladders[name]["rungs"][rung]["exact_match"], 3),
                           "latency_ms_p50_p99": [ladders[name]["rungs"][rung]["p50_latency_ms"],
                                                  ladders[name]["rungs"][rung]["p99_latency_ms"]],
                           "answered_by": ladders[name]["rungs"][rung].get("answered_by")} for name in variants}
        pairs = {}
        for x, y in pairs:
            a, b = preds[x][rung], preds[y][rung]
            ids = sorted(a.keys() & b.keys())
            same = sum(a[i]["prediction"] == b[i]["prediction"] for i in ids)
            pairs[f"{x} vs {y}"] = {
                "questions": len(ids), "identical_answers": same,
                "mean_abs_f1_difference": round(statistics.fmean(
                    abs(a[i]["scores"]["f1"] - b[i]["scores"]["f1"]) for i in ids), 3),
                "differing_examples": [{"id": i, "question": a[i]["question"], x: a[i]["prediction"],
                                        y: b[i]["prediction"]} for i in ids
                                       if a[i]["prediction"] != b[i]["prediction"]][:3]}
        per_rung[rung] = {"variants": variants, "pairs": pairs}
    results = {
        "what": "the run's test set answered by each half of serve.engine=auto alone, and by OpenVINO with 8 "
                "questions in flight and one at a time; same prompts, greedy",
        "run": str(run.root), "test_set": ladders[first]["test_set"],
        "variants": {name: list(o) + args.overrides for name, o in variants.items()},
        "weights": {"onnxruntime": "int8 ONNX (block 32, int8 activations), adapters merged",
                    "openvino": "Q8_0 GGUF, adapters merged"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rungs": per_rung, "seconds": round(time.perf_counter() - started, 1)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{'rung':10} " + " ".join(f"{f'F1 {n}':>15}" for n in variants) + "   identical: "
          + ", ".join(f"{x} vs {y}" for x, y in pairs))
    for rung, r in per_rung.items():
        print(f"{rung:10} " + " ".join(f"{r['variants'][n]['f1']:>15.3f}" for n in variants) + "   " + ", ".join(
            f"{p['identical_answers']}/{p['questions']}" for p in r["pairs"].values()))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
