"""Training throughput: verticalize's trainer vs the baseline a user would write, in one run.

Baseline: TRL ``SFTTrainer`` with a PEFT LoRA config and TRL's defaults (padded batches of 8, bf16 autocast,
gradient checkpointing), given the same learning rate, epochs and LoRA settings. Ours: ``verticalize.train`` with
its defaults (packing, assistant-only loss, bf16 frozen base where the CPU has bf16).

Same model (SmolLM2-135M-Instruct unless --model), same synthetic chat examples of mixed length, same epochs.
Each side trains in its own child process (so peak RSS is its own); then both adapters are scored by one
evaluator: mean loss per assistant token on the same validation examples, fp32 base + adapter.

    .venv/bin/python bench/train_throughput.py [--examples 200] [--epochs 1]

Prints a table and writes bench/results/train_throughput.json. Figures on a shared machine are noisy; the ratio
from one run is what to compare.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

SYSTEM = "You are a careful assistant for this domain. Answer from the domain's rules."
TOPICS = ["credit card annual fee", "loan application", "overdue interest", "customs tariff code", "server restart",
          "account freeze", "mortgage prepayment", "invoice dispute", "data retention", "password reset"]
CLAUSES = ["the bank must notify the customer in writing within five working days",
           "the fee is waived when the card is used six times in a calendar year",
           "the applicant provides proof of income and a valid identity document",
           "interest stops accruing once the loan is more than ninety days overdue",
           "the operator restarts the service and checks the logs for errors",
           "the customer may appeal the decision at any branch",
           "records are kept for at least five years after the account is closed",
           "the tariff code follows the harmonised system at eight digits",
           "a second approval is required for amounts above one million yuan",
           "the request is rejected when the documents are incomplete"]


def make_examples(n: int, seed: int) -> list[dict]:
    """Chat examples whose answers range from one clause to a dozen (long-tailed, like real QA data)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        n_clauses = min(12, max(1, int(rng.expovariate(1 / 3.0)) + 1))
        answer = "; ".join(rng.choice(CLAUSES) for _ in range(n_clauses)).capitalize() + "."
        question = f"Under the rules for {topic}, what applies in case {i}?"
        rows.append({"id": f"b{seed}-{i}", "messages": [{"role": "user", "content": question},
                                                        {"role": "assistant", "content": answer}],
                     "meta": {"kind": "synthetic", "task": "qa"}})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------- child processes
def child_ours(work: Path, args: argparse.Namespace) -> dict:
    import shutil

    from verticalize.artifacts import RunDir
    from verticalize.config import load_config
    from verticalize.train import train

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(work.parent / "data", work / "data")  # each variant gets its own run directory
    cfg = load_config(None, [f"model.base={args.model}", f"project.run_dir={work}",
                             f"train.epochs={args.epochs}", f"train.learning_rate={args.lr}",
                             "train.eval_every=1000000",
                             f"project.system_prompt={SYSTEM}", *args.sets])
    t0 = time.perf_counter()
    stage = train(cfg, RunDir(work))["stages"][0]
    m = stage["metrics"]
    return {"train_seconds": m["train_seconds"], "train_cpu_seconds": m["train_cpu_seconds"],
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "real_tokens": m["real_tokens"], "steps": m["steps"], "precision": stage["precision"],
            "packing": stage["packing"], "adapter": stage["path"], "peak_rss_mb": round(peak_rss_mb(), 1)}


def child_baseline(work: Path, args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from verticalize.config import ModelConfig
    from verticalize.models import resolve_base

    path = resolve_base(ModelConfig(base=args.model))
    rows = [json.loads(x) for x in (work.parent / "data" / "train.jsonl").read_text().splitlines()]
    ds = Dataset.from_list([{"messages": [{"role": "system", "content": SYSTEM}] + r["messages"]} for r in rows])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    t0 = time.perf_counter()
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=ds,
                         args=SFTConfig(output_dir=str(work / "out"), num_train_epochs=args.epochs,
                                        learning_rate=args.lr, save_strategy="no", report_to=[], logging_steps=5,
                                        seed=42, use_cpu=not torch.cuda.is_available()),
                         peft_config=LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                                target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    c0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    adapter = work / "adapter"
    trainer.model.save_pretrained(adapter)
    real = sum(len(x) for x in trainer.train_dataset["input_ids"]) * args.epochs
    a = trainer.args
    return {"train_seconds": round(out.metrics["train_runtime"], 2), "train_cpu_seconds": round(cpu, 2),
            "wall_seconds": round(wall, 2),
            "real_tokens": int(real), "steps": out.global_step, "adapter": str(adapter),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "settings": {"per_device_train_batch_size": a.per_device_train_batch_size, "bf16": a.bf16,
                         "gradient_checkpointing": a.gradient_checkpointing, "packing": a.packing,
                         "padding_free": a.padding_free, "max_length": a.max_length}}


# --------------------------------------------------------------------------------------------- evaluation
def validation_loss(model_name: str, adapter: str, val_path: Path) -> float:
    """Mean loss per assistant token of the validation examples, fp32 base + the adapter (same for both sides)."""
    import torch
    from peft import PeftModel

    from verticalize.config import ModelConfig
    from verticalize.models import load_base
    from verticalize.train.batching import collate, plan_batches
    from verticalize.train.data import ChatEncoder, load_chat_examples
    from verticalize.train.loop import loss_sum

    base, tok = load_base(ModelConfig(base=model_name), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter).eval()
    examples, _ = load_chat_examples(val_path, ChatEncoder(tok, SYSTEM, 1024))
    total, n = 0.0, 0
    with torch.no_grad():
        for b in plan_batches(examples, 2048, packing=True, seed=0, epoch=0, shuffle=False):
            total += float(loss_sum(model, collate(examples, b, packing=True, pad_id=0), 0, torch.device("cpu")))
            n += b.n_targets
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default); "
                                                            "on a shared machine 1 thread avoids OpenMP stalls")
    ap.add_argument("--work", default="/tmp/verticalize-bench/train_throughput")
    ap.add_argument("--out", default="bench/results/train_throughput.json")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME:KEY=V[,KEY=V]",
                    help="also run ours with these config overrides, e.g. fp32:train.precision=fp32 or "
                         "padded:train.packing=false (repeatable)")
    ap.add_argument("--reuse-baseline", metavar="JSON", help="take the baseline row from an earlier result file with "
                    "the same settings instead of training it again (it takes several times longer than ours); "
                    "the report says so")
    ap.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--name", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sets", nargs="*", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.child:
        fn = child_ours if args.child == "ours" else child_baseline
        print("RESULT " + json.dumps(fn(work / (args.name or args.child), args)))
        return

    write_jsonl(work / "data" / "train.jsonl", make_examples(args.examples, seed=1))
    write_jsonl(work / "data" / "validation.jsonl", make_examples(args.val, seed=2))
    runs = [("baseline", "baseline", []), ("ours", "ours", [])]
    reused = None
    if args.reuse_baseline:
        reused = json.loads(Path(args.reuse_baseline).read_text(encoding="utf-8"))
        same = ("model", "examples", "validation_examples", "epochs", "learning_rate", "threads")
        mine = {"model": args.model, "examples": args.examples, "validation_examples": args.val,
                "epochs": args.epochs, "learning_rate": args.lr, "threads": args.threads or "default"}
        if any(reused.get(k) != mine[k] for k in same):
            sys.exit(f"--reuse-baseline: {args.reuse_baseline} was run with other settings")
        runs = runs[1:]
    for spec in args.ablation:
        name, _, sets = spec.partition(":")
        runs.append((f"ours-{name}", "ours", sets.split(",")))
    common = [f"--{k}={v}" for k, v in vars(args).items()
              if k in ("examples", "val", "epochs", "lr", "model", "work", "threads")]
    results = {"baseline": {**reused["results"]["baseline"], "reused_from": reused["created"]}} if reused else {}
    for name, child, sets in runs:
        cmd = [sys.executable, __file__, *common, "--child", child, "--name", name, "--sets", *sets]
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not line:
            sys.exit(f"{name} failed:\n{done.stderr[-4000:]}")
        results[name] = {**json.loads(line[0][len("RESULT "):]), "overrides": sets}
    for side, r in results.items():
        if "reused_from" in r:
            continue
        r["real_tokens_per_s"] = round(r["real_tokens"] / r["train_seconds"], 1)
        r["real_tokens_per_cpu_s"] = round(r["real_tokens"] / r["train_cpu_seconds"], 1)
        r["val_loss"] = round(validation_loss(args.model, r["adapter"], work / "data" / "validation.jsonl"), 4)
    ours, base = results["ours"], results["baseline"]
    summary = {"tokens_per_s_ratio": round(ours["real_tokens_per_s"] / base["real_tokens_per_s"], 2),
               "tokens_per_cpu_s_ratio": round(ours["real_tokens_per_cpu_s"] / base["real_tokens_per_cpu_s"], 2),
               "peak_rss_ratio": round(ours["peak_rss_mb"] / base["peak_rss_mb"], 2),
               "val_loss_delta": round(ours["val_loss"] - base["val_loss"], 4)}
    report = {"model": args.model, "examples": args.examples, "threads": args.threads or "default",
              "validation_examples": args.val, "epochs": args.epochs, "learning_rate": args.lr,
              "results": results, "summary": summary,
              "goal": "ours >= 2x baseline real tokens/s, peak RSS <= baseline, val loss <= baseline",
              "note": "tokens per CPU-second (process time, one thread) is the figure that survives a shared, "
                      "overloaded machine; tokens per wall-second is what a user on an idle machine sees",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"{'':14} {'tok/s wall':>11} {'tok/cpu-s':>10} {'train s':>8} {'steps':>6} {'peak RSS MB':>12} "
          f"{'val loss':>9}")
    for side, r in results.items():
        print(f"{side:14} {r['real_tokens_per_s']:>11} {r['real_tokens_per_cpu_s']:>10} {r['train_seconds']:>8} "
              f"{r['steps']:>6} {r['peak_rss_mb']:>12} {r['val_loss']:>9}")
    print(f"ours/baseline: {summary['tokens_per_s_ratio']}x real tokens/s (wall), "
          f"{summary['tokens_per_cpu_s_ratio']}x per CPU-second, {summary['peak_rss_ratio']}x peak RSS, "
          f"validation loss {summary['val_loss_delta']:+.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
