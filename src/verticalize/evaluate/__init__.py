"""Evaluation: registered metrics, the ladder (prompt · rag · peft · peft+rag · full), business gates, report.

Public API:
    evaluate_run(cfg, run, test_set=None) -> dict     RUN/eval/ladder.json + predictions_<rung>.jsonl
    write_report(run) -> Path                         RUN/report/report.html + model_card.md
    check_gates(rungs, gates) / recommend(rungs, gate_results, task)
    METRICS, register_metric, get_metric              the metric registry
    load_test_set(run, user_file=None, ...)           the test set the ladder uses
"""

from verticalize.evaluate.gates import COST_ORDER, check_gates, recommend
from verticalize.evaluate.ladder import evaluate_run
from verticalize.evaluate.metrics import METRICS, get_metric, register_metric
from verticalize.evaluate.report import write_report
from verticalize.evaluate.testsets import TestSetError, load_test_set

__all__ = ["COST_ORDER", "METRICS", "TestSetError", "check_gates", "evaluate_run", "get_metric", "load_test_set",
           "recommend", "register_metric", "write_report"]
