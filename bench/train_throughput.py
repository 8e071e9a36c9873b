"""Training throughput: verticalize's trainer vs tuned TRL, in one run, 3 repetitions, median reported.

Baseline: TRL ``SFTTrainer`` set up as its documentation recommends for this case, not left at its defaults —
``packing=True`` (best-fit decreasing), ``padding_free=True``, completion-only loss (a conversational
prompt/completion dataset), a bf16 base, no gradient checkpointing — with the same LoRA settings, learning rate,
warm-up + cosine schedule, tokens per step (1,024) and number of steps as ours. Ours: ``verticalize.train`` with
its defaults (packing, assistant-only loss, bf16 frozen base where the CPU has bf16).

Neither side selects a checkpoint (ours evaluates never; TRL has no eval set): both keep their final weights, and
both adapters are scored by one evaluator — mean loss per assistant token, fp32 base + adapter — on a test split
that neither side trained or selected on. Each side trains in its own child process (peak RSS is its own); sides
alternate (baseline, ours, baseline, ours, ...) so a slow spell on this shared machine hits both.

    .venv/bin/python bench/train_throughput.py [--examples 160] [--steps 30] [--reps 3]

Prints a table and writes bench/results/train_throughput.json with TRL's settings inside. Tokens per CPU-second
is the figure that survives a noisy machine; medians of the repetitions are reported.
"""

from __future__ import annotations

import argparse
import json
import os
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
LORA = {"r": 8, "alpha": 32, "dropout": 0.1, "targets": ["q_proj", "v_proj"]}  # verticalize's defaults, both sides
TOKENS_PER_STEP = 1024   # ours: train.batch_tokens; TRL: one packed row of max_length per step
WARMUP_RATIO = 0.05


def child_ours(work: Path, args: argparse.Namespace) -> dict:
    import shutil

    from verticalize.artifacts import RunDir
    from verticalize.config import load_config
    from verticalize.train import train

    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    shutil.copy(work.parent / "data" / "train.jsonl", work / "data" / "train.jsonl")
    cfg = load_config(None, [f"model.base={args.model}", f"project.run_dir={work}",
                             f"train.max_steps={args.steps}", f"train.learning_rate={args.lr}",
                             f"train.batch_tokens={TOKENS_PER_STEP}", f"train.warmup_ratio={WARMUP_RATIO}",
                             f"train.lora.r={LORA['r']}", f"train.lora.alpha={LORA['alpha']}",
                             f"train.lora.dropout={LORA['dropout']}",
                             f"train.lora.target_modules={json.dumps(LORA['targets'])}",
                             "train.eval_every=1000000", "train.early_stopping_patience=0",
                             f"project.system_prompt={SYSTEM}", *args.sets])
    t0 = time.perf_counter()
    stage = train(cfg, RunDir(work))["stages"][0]
    m = stage["metrics"]
    return {"train_seconds": m["train_seconds"], "train_cpu_seconds": m["train_cpu_seconds"],
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "real_tokens": m["real_tokens"], "steps": m["steps"], "precision": stage["precision"],
            "packing": stage["packing"], "adapter": stage["path"], "peak_rss_mb": round(peak_rss_mb(), 1)}


def child_baseline(work: Path, args: argparse.Namespace) -> dict:
    import shutil

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from verticalize.config import ModelConfig
    from verticalize.models import resolve_base

    shutil.rmtree(work, ignore_errors=True)
    path = resolve_base(ModelConfig(base=args.model))
    rows = [json.loads(x) for x in (work.parent / "data" / "train.jsonl").read_text().splitlines()]
    # Conversational prompt/completion: TRL computes the loss on the completion (the assistant turn) only.
    ds = Dataset.from_list([{"prompt": [{"role": "system", "content": SYSTEM}, *r["messages"][:-1]],
                             "completion": [r["messages"][-1]]} for r in rows])
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)  # the bf16 base
    config = SFTConfig(output_dir=str(work / "out"), max_steps=args.steps, learning_rate=args.lr,
                       lr_scheduler_type="cosine", warmup_steps=int(WARMUP_RATIO * args.steps),  # as ours rounds it
                       per_device_train_batch_size=1,
                       gradient_accumulation_steps=1, max_length=TOKENS_PER_STEP, packing=True,
                       packing_strategy="bfd", padding_free=True, completion_only_loss=True, bf16=True,
                       gradient_checkpointing=False, save_strategy="no", eval_strategy="no", report_to=[],
                       logging_steps=5, seed=42, dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
                       use_cpu=not torch.cuda.is_available())
    t0 = time.perf_counter()
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=ds, args=config,
                         peft_config=LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                                target_modules=LORA["targets"], task_type="CAUSAL_LM"))
    c0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    adapter = work / "adapter"
    trainer.model.save_pretrained(adapter)
    # Real (non-padding) tokens seen: the packed rows hold whole examples, so count the loader's tokens.
    seen = int(trainer.state.num_input_tokens_seen or 0)
    per_epoch = sum(len(x) for x in trainer.train_dataset["input_ids"])
    a = trainer.args
    return {"train_seconds": round(out.metrics["train_runtime"], 2), "train_cpu_seconds": round(cpu, 2),
            "wall_seconds": round(wall, 2), "real_tokens": seen or None, "tokens_per_epoch": per_epoch,
            "steps": out.global_step, "adapter": str(adapter), "peak_rss_mb": round(peak_rss_mb(), 1),
            "settings": {"trl": __import__("trl").__version__, "packing": a.packing,
                         "packing_strategy": a.packing_strategy, "padding_free": a.padding_free,
                         "completion_only_loss": a.completion_only_loss, "bf16": a.bf16, "base_dtype": "bfloat16",
                         "gradient_checkpointing": a.gradient_checkpointing,
                         "per_device_train_batch_size": a.per_device_train_batch_size, "max_length": a.max_length,
                         "max_steps": a.max_steps, "learning_rate": a.learning_rate,
                         "lr_scheduler_type": str(a.lr_scheduler_type), "warmup_steps": a.warmup_steps,
                         "lora": LORA}}


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


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def run_child(args: argparse.Namespace, name: str, child: str, sets: list[str]) -> dict:
    common = [f"--{k}={v}" for k, v in vars(args).items()
              if k in ("examples", "val", "test", "steps", "lr", "model", "work", "threads")]
    cmd = [sys.executable, __file__, *common, "--child", child, "--name", name, "--sets", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not line:
        sys.exit(f"{name} failed:\n{done.stderr[-4000:]}")
    return {**json.loads(line[0][len("RESULT "):]), "overrides": sets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=160)
    ap.add_argument("--val", type=int, default=20, help="kept aside (never used by either side: no selection)")
    ap.add_argument("--test", type=int, default=40, help="scored by the one evaluator, for both sides")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps, both sides (1,024 tokens each)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each side; medians are reported")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    ap.add_argument("--work", default="/tmp/verticalize-bench/train_throughput")
    ap.add_argument("--out", default="bench/results/train_throughput.json")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME:KEY=V[,KEY=V]",
                    help="also run ours with these config overrides, e.g. fp32:train.precision=fp32 (repeatable)")
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
    write_jsonl(work / "data" / "test.jsonl", make_examples(args.test, seed=3))
    sides = [("baseline", "baseline", []), ("ours", "ours", [])]
    for spec in args.ablation:
        name, _, sets = spec.partition(":")
        sides.append((f"ours-{name}", "ours", sets.split(",")))
    reps: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    for rep in range(args.reps):
        for name, child, sets in sides:  # alternating, so a slow spell of the machine hits every side
            r = run_child(args, name, child, sets)
            r["real_tokens_per_s"] = round(r["real_tokens"] / r["train_seconds"], 1)
            r["real_tokens_per_cpu_s"] = round(r["real_tokens"] / r["train_cpu_seconds"], 1)
            r["test_loss"] = round(validation_loss(args.model, r["adapter"], work / "data" / "test.jsonl"), 4)
            r["load_avg"] = list(os.getloadavg())
            reps[name].append(r)
            print(f"rep {rep + 1} {name:14} {r['real_tokens_per_s']:>8} tok/s {r['real_tokens_per_cpu_s']:>8} "
                  f"tok/cpu-s  RSS {r['peak_rss_mb']:>7} MB  test loss {r['test_loss']}", flush=True)
    keys = ("real_tokens_per_s", "real_tokens_per_cpu_s", "train_seconds", "train_cpu_seconds", "peak_rss_mb",
            "test_loss", "real_tokens", "steps")
    medians = {name: {k: median([r[k] for r in rows]) for k in keys} for name, rows in reps.items()}
    ours, base = medians["ours"], medians["baseline"]
    summary = {"tokens_per_s_ratio": round(ours["real_tokens_per_s"] / base["real_tokens_per_s"], 2),
               "tokens_per_cpu_s_ratio": round(ours["real_tokens_per_cpu_s"] / base["real_tokens_per_cpu_s"], 2),
               "peak_rss_ratio": round(ours["peak_rss_mb"] / base["peak_rss_mb"], 2),
               "test_loss_delta": round(ours["test_loss"] - base["test_loss"], 4),
               "per_rep_tokens_per_cpu_s_ratio": [round(o["real_tokens_per_cpu_s"] / b["real_tokens_per_cpu_s"], 2)
                                                  for o, b in zip(reps["ours"], reps["baseline"])]}
    summary["keep_the_loop"] = bool(summary["tokens_per_cpu_s_ratio"] >= 1.3 and summary["peak_rss_ratio"] <= 1.0
                                    and summary["test_loss_delta"] <= 0.0)
    report = {"model": args.model, "examples": args.examples, "test_examples": args.test, "steps": args.steps,
              "tokens_per_step": TOKENS_PER_STEP, "learning_rate": args.lr, "warmup_ratio": WARMUP_RATIO,
              "lora": LORA, "threads": args.threads or "default", "repetitions": args.reps,
              "baseline_settings": reps["baseline"][0]["settings"], "medians": medians, "summary": summary,
              "repetitions_raw": reps,
              "decision_rule": "keep the hand-written loop while it is >= 1.3x tuned TRL per CPU-second at <= its "
                               "peak RSS and no worse test loss",
              "goal": ">= 2x tuned TRL real tokens/s and >= 50 % of this CPU's bf16 peak (~350 real tok/s here)",
              "selection": "none on either side (final weights); scored on a test split neither side saw",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"\nmedians of {args.reps}: {'':4} {'tok/s wall':>11} {'tok/cpu-s':>10} {'train s':>8} "
          f"{'peak RSS MB':>12} {'test loss':>9}")
    for name, m in medians.items():
        print(f"{name:24} {m['real_tokens_per_s']:>11} {m['real_tokens_per_cpu_s']:>10} {m['train_seconds']:>8} "
              f"{m['peak_rss_mb']:>12} {m['test_loss']:>9}")
    print(f"ours/tuned TRL: {summary['tokens_per_s_ratio']}x real tokens/s (wall), "
          f"{summary['tokens_per_cpu_s_ratio']}x per CPU-second, {summary['peak_rss_ratio']}x peak RSS, "
          f"test loss {summary['test_loss_delta']:+.4f}; keep the loop: {summary['keep_the_loop']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
