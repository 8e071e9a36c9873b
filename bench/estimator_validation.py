"""Validate the memory estimator against measured peak memory of real training steps.

Each setting runs in a fresh subprocess: import the libraries, note RSS, load the model, wrap it with PEFT
(or train it fully), run a few real forward + backward + AdamW steps on random tokens, and read the peak RSS
(``resource.getrusage().ru_maxrss``; on a CUDA device ``torch.cuda.max_memory_allocated``). The measured
figure is peak minus the RSS before the model was loaded, compared with the estimate's total minus its fixed
framework overhead (the libraries are already loaded at the baseline). The formula is not fitted to these cases.

On the CPU every setting runs twice: with glibc's default malloc (what a user gets: freed activation buffers stay
in the heap), compared with the full CPU estimate, and with ``mallopt(M_MMAP_THRESHOLD, 128 KiB)`` (freed buffers
go back to the OS, so RSS follows live tensor bytes), compared with the estimate without its CPU heap slack.

    .venv/bin/python bench/estimator_validation.py            # SmolLM2 (embedded) + a tiny model
    .venv/bin/python bench/estimator_validation.py --quick    # tiny models only (seconds)

    .venv/bin/python bench/estimator_validation.py --summarise  # recompute the errors from the stored rows

Time: each row also compares the estimated tokens/s with the measured one, uncalibrated and calibrated the way
`verticalize estimate --calibrate` does (leave one out: the median measured/estimated ratio of the other settings
with the same method and precision).

Prints a table with relative errors and writes bench/results/estimator_validation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "estimator_validation.json"
GIB = 1024 ** 3

# (label, model key, method, precision, micro_batch, seq_len, gradient checkpointing, lora targets)
SMOLLM_SETTINGS = [
    ("smollm2 lora fp32 b1x512", "smollm2", "lora", "fp32", 1, 512, False, ["q_proj", "v_proj"]),
    ("smollm2 lora bf16 b2x512", "smollm2", "lora", "bf16", 2, 512, False, ["q_proj", "v_proj"]),
    ("smollm2 lora bf16 b2x512 all-linear", "smollm2", "lora", "bf16", 2, 512, False, "all-linear"),
    ("smollm2 lora bf16 b4x512 grad-ckpt", "smollm2", "lora", "bf16", 4, 512, True, ["q_proj", "v_proj"]),
    ("smollm2 full fp32 b1x256", "smollm2", "full", "fp32", 1, 256, False, None),
    ("smollm2 prefix fp32 b2x512", "smollm2", "prefix", "fp32", 2, 512, False, None),
]
TINY_SETTINGS = [
    ("tiny-h512 full fp32 b4x512", "tiny512", "full", "fp32", 4, 512, False, None),
    ("tiny-h512 full bf16-autocast b4x512", "tiny512", "full", "bf16", 4, 512, False, None),
    ("tiny-h512 lora fp32 b8x512", "tiny512", "lora", "fp32", 8, 512, False, ["q_proj", "v_proj"]),
    ("tiny-h512 lora bf16 b8x512", "tiny512", "lora", "bf16", 8, 512, False, ["q_proj", "v_proj"]),
]
STEPS = 4  # the memory peak is from step 2 on (optimizer states live with activations and gradients); time is
           # the median of steps 2-4
M_MMAP_THRESHOLD = -3


# --------------------------------------------------------------------------------------------- child process
def run_child(spec: dict) -> dict:
    import ctypes
    import resource

    if spec.get("mallopt"):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)

    import psutil
    import torch
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cuda = spec.get("cuda", False) and torch.cuda.is_available()
    rss0 = psutil.Process().memory_info().rss
    dtype = torch.float32 if spec["precision"] == "fp32" or spec["method"] == "full" else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype)
    if cuda:
        model.to("cuda")
        torch.cuda.reset_peak_memory_stats()
    if spec["method"] == "lora":
        model = get_peft_model(model, LoraConfig(r=spec["lora_r"], lora_alpha=32, lora_dropout=spec["lora_dropout"],
                                                 target_modules=spec["lora_targets"], task_type="CAUSAL_LM"))
    elif spec["method"] == "prefix":
        model = get_peft_model(model, PrefixTuningConfig(num_virtual_tokens=spec["virtual_tokens"],
                                                         task_type="CAUSAL_LM"))
    if spec["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size if hasattr(model.config, "vocab_size") else model.base_model.config.vocab_size
    device = "cuda" if cuda else "cpu"
    ids = torch.randint(3, vocab, (spec["micro_batch"], spec["seq_len"]), device=device)
    losses, step_seconds = [], []
    # Full fine-tuning in bf16 keeps fp32 master weights and computes under autocast, as the trainer does.
    amp = spec["method"] == "full" and spec["precision"] == "bf16"
    for _ in range(STEPS):
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))
        del out
        step_seconds.append(time.perf_counter() - start)
    # Throughput from the steps after the first: step 1 pays the one-off warm-up (allocations, kernel choice,
    # optimizer state creation), which a real run spreads over hundreds of steps.
    seconds = sorted(step_seconds[1:])[len(step_seconds[1:]) // 2]
    if cuda:
        peak, base = torch.cuda.max_memory_allocated(), 0
    else:
        peak, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss0
    return {"baseline_rss": rss0, "peak": peak, "measured": peak - base, "seconds_per_step": seconds,
            "step_seconds": step_seconds,
            "losses": losses, "trainable": sum(p.numel() for p in params), "cuda": cuda}


# --------------------------------------------------------------------------------------------- parent
def estimate_for(model_dir: str, method: str, precision: str, b: int, s: int, gc: bool, targets, cuda: bool):
    from verticalize.config import load_config
    from verticalize.plan import estimate

    overrides = [f"model.base={model_dir}", f"train.method={method}", f"train.precision={precision}",
                 f"train.batch_tokens={b * s}", f"model.max_seq_len={s}",
                 f"train.gradient_checkpointing={str(gc).lower()}", f"plan.device={'auto' if cuda else 'cpu'}"]
    if targets:
        overrides.append(f"train.lora.target_modules={json.dumps(targets)}")
    cfg = load_config(None, overrides)
    return cfg, estimate(cfg, tokens=b * s * STEPS, calibrated=False)  # the FLOPs model alone is under test


def model_dirs(keys: set[str], tmp: Path) -> dict[str, str]:
    dirs = {}
    if "smollm2" in keys:
        from verticalize.config import ModelConfig
        from verticalize.models import resolve_base

        dirs["smollm2"] = str(resolve_base(ModelConfig()))
    if "tiny512" in keys:
        from verticalize.models.tiny import build_tiny_model

        dirs["tiny512"] = str(build_tiny_model(tmp / "tiny512", hidden=512, layers=8, heads=8))
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="Tiny models only.")
    ap.add_argument("--cuda", action="store_true", help="Measure on the CUDA device (max_memory_allocated).")
    ap.add_argument("--only", help="Run only settings whose label contains this text.")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON output path.")
    ap.add_argument("--merge", action="store_true", help="Keep the other settings already in --out.")
    ap.add_argument("--summarise", action="store_true",
                    help="Recompute the summary (memory and time errors) from the rows already in --out.")
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(json.loads(args.child))), flush=True)
        return
    if args.summarise:
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        write_results(previous["rows"], args.out, created=previous.get("created"))
        return
    settings = TINY_SETTINGS + ([] if args.quick else SMOLLM_SETTINGS)
    if args.only:
        settings = [x for x in settings if args.only in x[0]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = model_dirs({x[1] for x in settings}, Path(tmp))
        for label, key, method, precision, b, s, gc, targets in settings:
            cfg, est = estimate_for(dirs[key], method, precision, b, s, gc, targets, args.cuda)
            spec = {"model_dir": dirs[key], "method": method, "precision": precision, "micro_batch": b,
                    "seq_len": s, "gradient_checkpointing": gc, "lora_r": cfg.train.lora.r,
                    "lora_dropout": cfg.train.lora.dropout, "lora_targets": targets,
                    "virtual_tokens": cfg.train.prefix.num_virtual_tokens, "cuda": args.cuda}
            modes = [("default", False)] if args.cuda else [("default", False), ("mallopt", True)]
            row = {"setting": label, "model": key, "method": method, "precision": precision,
                   "micro_batch": b, "seq_len": s, "gradient_checkpointing": gc, "lora_targets": targets,
                   "estimate_breakdown_gib": {k: v / GIB for k, v in est.memory.to_dict().items()},
                   "trainable_estimated": est.trainable, "tokens_per_second_estimated": est.tokens_per_second}
            for mode, mallopt in modes:
                got = measure(spec | {"mallopt": mallopt}, label)
                if got is None:
                    continue
                predicted = est.memory.total - est.memory.overhead - (est.memory.heap_slack if mallopt else 0)
                row[mode] = {"estimate_bytes": predicted, "measured_bytes": got["measured"],
                             "relative_error": (predicted - got["measured"]) / got["measured"],
                             "baseline_rss_gib": got["baseline_rss"] / GIB,
                             "seconds_per_step": got["seconds_per_step"],
                             "tokens_per_second": b * s / got["seconds_per_step"], "cuda": got["cuda"]}
                row["trainable_measured"] = got["trainable"]
                print(f"{label:40s} {mode:8s} est {predicted / GIB:6.2f} GiB  measured {got['measured'] / GIB:6.2f}"
                      f" GiB  error {row[mode]['relative_error']:+6.1%}", flush=True)
            if "default" in row:
                rows.append(row)
    if args.merge and args.out.is_file():
        done = {r["setting"] for r in rows}
        rows = [r for r in json.loads(args.out.read_text(encoding="utf-8"))["rows"] if r["setting"] not in done] + rows
    write_results(rows, args.out)


def add_time_errors(rows: list[dict]) -> None:
    """Per row: the FLOPs model's time error, and the error after calibrating from the OTHER rows (leave one
    out: the median measured/estimated ratio of the other settings with the same method and precision, else of
    all other settings) — what `verticalize estimate --calibrate` does with the runs a user has measured."""
    import statistics

    ratio = {r["setting"]: r["default"]["tokens_per_second"] / r["tokens_per_second_estimated"] for r in rows}
    for r in rows:
        others = [o for o in rows if o["setting"] != r["setting"]]
        alike = [o for o in others if (o["method"], o["precision"]) == (r["method"], r["precision"])]
        basis = alike or others
        factor = statistics.median(ratio[o["setting"]] for o in basis) if basis else 1.0
        measured = r["default"]["tokens_per_second"]
        r["time"] = {"estimated_tokens_per_s": r["tokens_per_second_estimated"], "measured_tokens_per_s": measured,
                     "relative_error": r["tokens_per_second_estimated"] / measured - 1,
                     "off_by_factor": max(ratio[r["setting"]], 1 / ratio[r["setting"]]),
                     "calibration_factor": factor, "calibrated_from": "same method+precision" if alike else "all",
                     "calibrated_relative_error": r["tokens_per_second_estimated"] * factor / measured - 1}


def write_results(rows: list[dict], out: Path, created: str | None = None) -> dict:
    add_time_errors(rows)
    print_table(rows)
    summary: dict = {"settings": len(rows)}
    for mode in ("default", "mallopt"):
        errors = [abs(r[mode]["relative_error"]) for r in rows if mode in r]
        if errors:
            summary[mode] = {"mean_abs_relative_error": sum(errors) / len(errors),
                             "max_abs_relative_error": max(errors), "n": len(errors)}
    for key, label in (("relative_error", "time_uncalibrated"), ("calibrated_relative_error", "time_calibrated")):
        errors = [abs(r["time"][key]) for r in rows]
        summary[label] = {"mean_abs_relative_error": sum(errors) / len(errors), "max_abs_relative_error": max(errors),
                          "median_abs_relative_error": sorted(errors)[len(errors) // 2], "n": len(errors)}
    summary["time_uncalibrated"]["max_off_by_factor"] = max(r["time"]["off_by_factor"] for r in rows)
    summary["time_note"] = ("measured tokens/s: median of steps 2-4 of each setting (step 1 is warm-up); calibrated = "
                            "leave-one-out median ratio of the other settings with the same method and precision")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "summarised": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "machine": platform.platform(), "steps": STEPS, "summary": summary,
                               "rows": rows}, indent=2), encoding="utf-8")
    for mode in ("default", "mallopt", "time_uncalibrated", "time_calibrated"):
        if mode in summary:
            m = summary[mode]
            print(f"{mode}: mean |error| {m['mean_abs_relative_error']:.1%}, max |error| "
                  f"{m['max_abs_relative_error']:.1%} over {m['n']} settings")
    print(f"→ {out}")
    return summary


def measure(spec: dict, label: str) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{label}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT "):])


def print_table(rows: list[dict]) -> None:
    print(f"\n{'setting':40s} {'trainable':>10s} {'est GiB':>8s} {'RSS GiB':>8s} {'error':>7s} "
          f"{'est live':>8s} {'live GiB':>8s} {'error':>7s} {'tok/s':>6s} {'est tok/s':>9s} {'t error':>8s} "
          f"{'calib.':>8s}")
    for r in rows:
        d, m = r["default"], r.get("mallopt")
        live = (f"{m['estimate_bytes'] / GIB:8.2f} {m['measured_bytes'] / GIB:8.2f} {m['relative_error']:+7.1%}"
                if m else f"{'-':>8s} {'-':>8s} {'-':>7s}")
        print(f"{r['setting']:40s} {r['trainable_measured']:>10,d} {d['estimate_bytes'] / GIB:8.2f} "
              f"{d['measured_bytes'] / GIB:8.2f} {d['relative_error']:+7.1%} {live} {d['tokens_per_second']:6.0f} "
              f"{r['tokens_per_second_estimated']:9.0f} {r['time']['relative_error']:+8.0%} "
              f"{r['time']['calibrated_relative_error']:+8.0%}")


if __name__ == "__main__":
    main()
