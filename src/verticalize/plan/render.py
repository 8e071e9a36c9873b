"""Plain-text tables for estimates and advice (what the CLI prints)."""

from __future__ import annotations

from verticalize.plan.advisor import Advice
from verticalize.plan.devices import GIB
from verticalize.plan.estimator import Estimate


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def human_count(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _setting_line(est: Estimate) -> str:
    s = est.setting
    parts = [f"model {est.arch.name} ({human_count(est.arch.num_params)} params, {est.arch.source})",
             f"method {s.method}", f"precision {s.precision}",
             f"batch {s.micro_batch}×{s.seq_len} tokens/device",
             f"gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}",
             f"{s.num_devices} × {est.device.name}" + (f", ZeRO-{s.zero_stage}" if s.zero_stage else "")]
    return ", ".join(parts)


def format_estimate(est: Estimate) -> str:
    m = est.memory
    gib = lambda b: f"{b / GIB:.2f}"
    rows = [["weights", gib(m.weights)], ["gradients", gib(m.gradients)], ["optimizer states", gib(m.optimizer)],
            ["activations", gib(m.activations)], ["logits + loss", gib(m.logits)],
            ["framework overhead", gib(m.overhead)],
            *([["CPU heap slack", gib(m.heap_slack)]] if m.heap_slack else []),
            ["total per device", gib(m.total)], ["available", gib(est.available_bytes)]]
    verdict = "fits" if est.fits else "DOES NOT FIT"
    out = [_setting_line(est),
           f"trainable parameters: {human_count(est.trainable)} ({est.trainable_share:.3%} of the model)",
           "", _table(["memory", "GiB"], rows),
           f"=> {verdict} ({m.total / GIB:.2f} of {est.available_bytes / GIB:.2f} GiB)",
           "",
           f"time: {human_count(est.tokens)} tokens ({est.tokens_source})",
           f"      {est.flops_per_token / 1e9:.2f} GFLOP/token at {est.sustained_tflops:.2f} TFLOP/s sustained per "
           f"device → {est.tokens_per_second:,.0f} tokens/s, {human_duration(est.seconds)}",
           f"cost: {est.seconds / 3600 * est.setting.num_devices:.2f} device-hours"
           + (f" × {est.price_per_device_hour:g}/h = {est.cost:,.2f}" if est.price_per_device_hour else
              " (set plan.price_per_device_hour for a cost)")]
    out += [f"note: {n}" for n in est.notes]
    return "\n".join(out)


def format_comparison(estimates: list[Estimate]) -> str:
    if not estimates:
        return ""
    base = estimates[0]
    rows = []
    for e in estimates:
        rows.append([e.setting.method, human_count(e.trainable), f"{e.trainable_share:.3%}",
                     f"{e.memory.states / GIB:.2f}", f"{(e.memory.activations + e.memory.logits) / GIB:.2f}",
                     f"{e.memory.total / GIB:.2f}", "yes" if e.fits else "no",
                     f"{e.tokens_per_second:,.0f}", human_duration(e.seconds),
                     f"{e.cost:,.2f}" if e.price_per_device_hour else "-"])
    head = (f"{base.arch.name}, {base.setting.precision}, batch {base.setting.micro_batch}×{base.setting.seq_len}, "
            f"{base.setting.num_devices} × {base.device.name}, {human_count(base.tokens)} tokens "
            f"({base.tokens_source})")
    table = _table(["method", "trainable", "share", "states GiB", "activ. GiB", "total GiB", "fits",
                    "tokens/s", "time", "cost"], rows)
    notes = sorted({n for e in estimates for n in e.notes})
    return "\n".join([head, "", table, *(f"note: {n}" for n in notes)])


def format_advice(advice: Advice) -> str:
    out = [f"recommended route: {advice.route}" + ("  (refined by measured ladder results)"
                                                   if advice.ladder_used else ""), ""]
    rows = [[str(i + 1), r.route, f"{r.score:+.1f}"] for i, r in enumerate(advice.ranked)]
    out.append(_table(["rank", "route", "score"], rows))
    for r in advice.ranked[:3]:
        out.append("")
        out.append(f"{r.route}:")
        out += [f"  {reason}" for reason in r.reasons]
    out += [f"note: {n}" for n in advice.notes]
    return "\n".join(out)
