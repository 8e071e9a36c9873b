"""One scripted feedback round on the demo domain: does the next version learn the corrections, and at what cost?

Run 1 is a finished demo run (``--run1``, e.g. what ``verticalize demo`` wrote; else the demo is run first). The
questions of the demo's human test set that run 1's best adapter rung (peft+rag) answered wrongly and for which a
paraphrase is written in PARAPHRASES below are "served" and corrected with their reference answer, then approved —
what a reviewer would do in the review queue. Two next versions are trained with `run --iterate` from copies of
run 1, on the same approved feedback:

- ``sft``: the corrections join the seed data (the SFT stage retrains on everything);
- ``sft+dpo``: the same, then a ``task: dpo`` stage on the same feedback's preference pairs;
- ``sft+kto``: the same, then a ``task: kto`` stage on the same pairs (each read as a desirable and an undesirable
  answer), with the dpo stage's epochs and learning rate.

Scored on (a) the paraphrases of the corrected questions — written for this bench, never trained on, the
questions a user asks next —, (b) the demo's test set, (c) the general-skill probe (forgetting guard); the
paraphrase ladder is kept beside the run's own ladder (``eval/ladder_paraphrases.json``).

    .venv/bin/python bench/feedback_round.py --run1 runs/demo [--work /tmp/verticalize-bench/feedback_round]

Writes bench/results/feedback_round.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

# Paraphrases of demo test questions (the reference answers are the test set's): written for this bench.
PARAPHRASES = {
    "What foreign transaction fee does a Harbor Gold card charge?":
        "How much is the foreign transaction fee on the Harbor Gold card?",
    "信用卡逾期违约金每期最高是多少？": "每期信用卡逾期违约金的上限是多少？",
    "12 期账单分期的每期手续费率是多少？": "账单分期 12 期时，每期收取多少手续费率？",
    "How much does Lost Card Protection cover for a Harbor Standard card?":
        "For a Harbor Standard card, what is the maximum Lost Card Protection payout?",
    "涉及境外交易的争议，本行最长可以在多少个工作日内答复？": "对于境外交易争议，本行最迟在几个工作日内给出答复？",
    "海湾安居装修贷的金额不得超过装修合同金额的多少？": "海湾安居装修贷最多可以贷装修合同金额的百分之多少？",
    "What is the minimum down payment for a used car under the Harbor Auto Loan?":
        "Under the Harbor Auto Loan, how large must the down payment on a used car be at least?",
    "What annual interest rate does a grade B borrower pay?": "Which annual rate applies to a borrower rated grade B?",
    "海湾薪享贷在收到完整材料后多少个工作日内作出审批决定？": "材料齐全后，海湾薪享贷需要几个工作日给出审批结果？",
    "每次提前还款的金额不得低于多少（结清除外）？": "除结清外，单次提前还款最少要还多少？",
    "放款日为 31 日的个人贷款，每月还款日是几号？": "如果个人贷款在 31 日放款，每月哪一天还款？",
    "Above what total personal loan balance is collateral or a guarantor required?":
        "When the total personal loan balance exceeds what amount is a guarantor or collateral needed?",
}
RUNG = "peft+rag"
WRONG_BELOW = 0.5  # answer F1 under this: the answer is corrected


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def script_feedback(run1, adapter: str) -> list[dict]:
    """Serve-and-correct the wrong answers of run 1 that have a paraphrase; returns the corrected items."""
    from verticalize.serve.feedback import FeedbackStore

    store = FeedbackStore(run1.feedback_db)
    corrected = []
    for i, row in enumerate(_rows(run1.predictions(RUNG))):
        f1 = (row.get("scores") or {}).get("f1", 0.0)
        if f1 >= WRONG_BELOW or row["question"] not in PARAPHRASES:
            continue
        reference = row["reference"][0] if isinstance(row["reference"], list) else row["reference"]
        rid = f"bench-{i}"
        store.record_response(rid, adapter, [{"role": "user", "content": row["question"]}], row["prediction"], [],
                              True)
        store.review(store.add_feedback(rid, -1, reference, "wrong figure"), "approve", "bench")
        corrected.append({"question": row["question"], "reference": reference, "served": row["prediction"],
                          "paraphrase": PARAPHRASES[row["question"]]})
    return corrected


def evaluate_both(cfg, run, paraphrase_file: Path, test_file: Path) -> dict:
    """The adapter rungs on the test set without the corrected questions, and on their paraphrases; the run's own
    ladder.json is put back afterwards (the two ladders are kept beside it)."""
    from verticalize.evaluate import evaluate_run

    own = run.ladder.with_name("ladder_own.json")
    if run.ladder.is_file():
        shutil.copy(run.ladder, own)
    cfg = cfg.model_copy(deep=True)
    cfg.eval.rungs = ["peft", RUNG]
    out = {}
    for name, path in (("test_set", test_file), ("paraphrases", paraphrase_file)):
        ladder = evaluate_run(cfg, run, test_set=path)
        shutil.copy(run.ladder, run.ladder.with_name(f"ladder_{name}.json"))
        out[name] = {r: {k: ladder["rungs"][r].get(k) for k in ("f1", "exact_match", "general_score",
                                                               "general_regression", "general_by_kind")}
                     for r in ladder["rungs"]}
    if own.is_file():
        shutil.copy(own, run.ladder)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run1", type=Path, required=True, help="a finished demo run (verticalize demo)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/verticalize-bench/feedback_round"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/feedback_round.json"))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override for every run "
                    "(e.g. model.base=... for a smoke test on a tiny model)")
    ap.add_argument("--only", choices=["sft", "sft+dpo", "sft+kto"], help="run this variant only and merge it into "
                    "--out (the other variants' rows and run 1's are kept from the file)")
    args = ap.parse_args()

    from verticalize.artifacts import RunDir, write_jsonl
    from verticalize.cli.pipeline import demo_config_path
    from verticalize.config import load_config
    from verticalize.pipeline import run_iteration
    from verticalize.testsets import read_test_file

    shutil.rmtree(args.work, ignore_errors=True)
    variants = {"sft": [], **{f"sft+{task}": [
        "train.stages=" + json.dumps([{"name": "task", "task": "sft"},
                                      {"name": "prefs", "task": task, "data": "preferences", "epochs": 3,
                                       "learning_rate": 2e-4}])] for task in ("dpo", "kto")}}
    results: dict = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rung": RUNG, "variants": {}}
    if args.only:
        variants = {args.only: variants[args.only]}
        if args.out.is_file():
            kept = json.loads(args.out.read_text(encoding="utf-8"))
            results["variants"] = {k: v for k, v in kept.get("variants", {}).items() if k != args.only}
            results["merged_from"] = kept.get("created")
    paraphrase_file, test_file = args.work / "paraphrases.jsonl", args.work / "test_without_corrected.jsonl"
    for name, extra in variants.items():
        root = args.work / name.replace("+", "_") / "demo"
        shutil.copytree(args.run1, root)
        run1 = RunDir(root)
        cfg = load_config(demo_config_path("qa"), [f"project.run_dir={root}", *args.sets])
        corrected = script_feedback(run1, "task")
        write_jsonl(paraphrase_file, [{"question": c["paraphrase"], "answer": c["reference"]} for c in corrected])
        # The corrected questions leave the test set: they are training data now (the data stage would otherwise
        # decontaminate them away), and their paraphrases are what is measured.
        asked = {c["question"] for c in corrected}
        kept = [r.row for r in read_test_file(cfg.project.test_set).rows
                if r.parsed is not None and r.parsed.question not in asked]
        write_jsonl(test_file, kept)
        if "run1" not in results:
            results["corrected"] = corrected
            results["run1"] = evaluate_both(cfg, run1, paraphrase_file, test_file)
        t0 = time.perf_counter()
        sets = [*args.sets, f"project.test_set={test_file}", *extra]
        result, it = run_iteration(load_config(demo_config_path("qa"), [f"project.run_dir={root}", *sets]))
        seconds = time.perf_counter() - t0
        cfg2 = load_config(demo_config_path("qa"), [f"project.run_dir={it.target.root}", *sets])
        results["variants"][name] = {**evaluate_both(cfg2, it.target, paraphrase_file, test_file),
                                     "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     "iteration_seconds": round(seconds, 1), "counts": it.counts,
                                     "overrides": [*args.sets, *extra]}
        print(name, json.dumps(results["variants"][name]["paraphrases"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
