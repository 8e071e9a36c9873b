"""Prometheus metrics of the gateway, named in vLLM's style (`verticalize:…`) so vLLM dashboards translate.

Each app gets its own registry, so several gateways (or tests) in one process do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0)
TOKEN_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("verticalize:requests", "Requests finished, by adapter, rung and status code.",
                                ["adapter", "rung", "status"], registry=r)
        self.errors = Counter("verticalize:errors", "Errors by type.", ["type"], registry=r)
        self.e2e_latency = Histogram("verticalize:e2e_request_latency_seconds", "End-to-end request latency.",
                                     ["adapter"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("verticalize:time_to_first_token_seconds", "Time to first token.", ["adapter"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("verticalize:time_per_output_token_seconds", "Inter-token latency.", ["adapter"],
                             buckets=TOKEN_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("verticalize:prompt_tokens", "Prompt tokens processed.", ["adapter"],
                                     registry=r)
        self.generation_tokens = Counter("verticalize:generation_tokens", "Tokens generated.", ["adapter"],
                                         registry=r)
        self.engine_answers = Counter("verticalize:engine_answers", "Answers by the engine that generated them "
                                      "(serve.engine=split: onnxruntime for a lone request, openvino under load).",
                                      ["engine"], registry=r)
        self.retrieval_latency = Histogram("verticalize:retrieval_latency_seconds", "Knowledge-base search time.",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.retrieval_requests = Counter("verticalize:retrieval_requests", "Requests that used retrieval, by "
                                          "whether any chunk was found.", ["hit"], registry=r)
        self.running = Gauge("verticalize:num_requests_running", "Requests generating now.", registry=r)
        self.waiting = Gauge("verticalize:num_requests_waiting", "Requests queued for a generation slot.",
                             registry=r)
        # Rolling quality signals (seed 003, step 7): what a dashboard watches between evaluations.
        self.answer_chars = Histogram("verticalize:answer_length_chars", "Answer length in characters.",
                                      ["adapter"], buckets=(10, 25, 50, 100, 200, 400, 800, 1600), registry=r)
        self.refusals = Counter("verticalize:refusals", "Answers that decline (\"I don't know\" / 无法回答).",
                                ["adapter"], registry=r)
        self.out_of_domain = Counter("verticalize:out_of_domain_queries", "Queries unlike the training data.",
                                     ["adapter"], registry=r)
        self.feedback = Counter("verticalize:feedback", "Feedback received, by rating sign.", ["rating"],
                                registry=r)
