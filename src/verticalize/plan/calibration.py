"""Throughput calibration: the estimator's time taken from runs measured on this machine.

The FLOPs model (estimator.py) assumes a model-FLOPs utilisation; real throughput depends on the kernels, the
sequence lengths and the machine: on this project's own validation (bench/results/estimator_validation.json)
it was 1.1–4.7× off (pessimistic on this CPU; 2.4–20× off when the warm-up step was counted). Every trained stage
records what it really did (``verticalize_adapter.json``: ``real_tokens``, ``train_seconds``, ``tokens_per_s``).
``verticalize estimate --calibrate RUN`` compares that with the uncalibrated estimate for the same setting and keeps
the ratio per (device, method, precision) in a small JSON file; later estimates on the same device multiply the
assumed throughput by the median ratio of the matching samples (the device's median when the method or precision
was never measured) and say so in their notes.

The file: ``plan.calibration_file``, else $VERTICALIZE_CALIBRATION, else ~/.cache/verticalize/
throughput_calibration.json — per machine, because a ratio measured on one machine says nothing of another.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verticalize.artifacts import RunDir, read_adapters
from verticalize.errors import UserError

MAX_SAMPLES_PER_KEY = 16  # the newest are kept: a machine's software changes, old measurements age out
DEFAULT_FILE = "~/.cache/verticalize/throughput_calibration.json"


class CalibrationError(UserError, ValueError):
    """A run that cannot calibrate (nothing trained, no measured throughput) or an unreadable calibration file."""


@dataclass(frozen=True)
class Sample:
    """One trained stage: what it measured against what the uncalibrated estimate predicted."""

    device: str
    method: str
    precision: str
    measured_tokens_per_s: float
    estimated_tokens_per_s: float
    run: str
    adapter: str
    created: str

    @property
    def key(self) -> str:
        return calibration_key(self.device, self.method, self.precision)

    @property
    def factor(self) -> float:
        return self.measured_tokens_per_s / self.estimated_tokens_per_s


@dataclass(frozen=True)
class Calibration:
    """The factor an estimate applies, and where it came from."""

    factor: float
    samples: int
    key: str        # the matching key, or "<device>/*" for the device-wide fallback

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibration_key(device: str, method: str, precision: str) -> str:
    return f"{device}/{method}/{precision}"


def calibration_path(configured: str | None = None) -> Path:
    raw = configured or os.environ.get("VERTICALIZE_CALIBRATION") or DEFAULT_FILE
    return Path(raw).expanduser()


def read_samples(path: Path) -> dict[str, list[dict[str, Any]]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CalibrationError(f"calibration file {path} is unreadable ({e}); delete it to start again") from e
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, dict):
        raise CalibrationError(f"calibration file {path} has no 'samples' mapping; delete it to start again")
    return samples


def record(samples: list[Sample], path: Path) -> dict[str, list[dict[str, Any]]]:
    """Add ``samples`` to the file (replacing an earlier sample of the same run and adapter); returns all."""
    stored = read_samples(path)
    for s in samples:
        kept = [row for row in stored.get(s.key, []) if (row.get("run"), row.get("adapter")) != (s.run, s.adapter)]
        stored[s.key] = (kept + [{**asdict(s), "factor": s.factor}])[-MAX_SAMPLES_PER_KEY:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"samples": stored}, indent=2), encoding="utf-8")
    tmp.replace(path)
    return stored


def lookup(path: Path, device: str, method: str, precision: str) -> Calibration | None:
    """The median factor of the matching samples; the device's median when this method/precision has none."""
    stored = read_samples(path)
    key = calibration_key(device, method, precision)
    rows = stored.get(key) or []
    if not rows:
        key = f"{device}/*"
        rows = [row for k, group in stored.items() if k.startswith(f"{device}/") for row in group]
    factors = [float(r["factor"]) for r in rows if float(r.get("factor") or 0) > 0]
    if not factors:
        return None
    return Calibration(statistics.median(factors), len(factors), key)


def measured_samples(run: RunDir, estimate_for: Any) -> list[Sample]:
    """One sample per trained stage of ``run`` that recorded its throughput.

    ``estimate_for(method, precision, tokens)`` returns the *uncalibrated* estimate for the run's own setting with
    that method and precision (the caller builds it from the run's config)."""
    adapters = read_adapters(run)
    if not adapters:
        raise CalibrationError(f"no trained stages under {run.adapters_dir}: train first (`verticalize train`)")
    out = []
    for a in adapters:
        metrics = a.meta.get("metrics") or {}
        seconds, tokens = metrics.get("train_seconds"), metrics.get("real_tokens")
        measured = metrics.get("tokens_per_s") or (tokens / seconds if tokens and seconds else None)
        if not measured:
            continue
        precision = a.meta.get("precision")
        est = estimate_for(a.method, precision, int(tokens or 0))
        precision = str(precision or est.setting.precision)
        out.append(Sample(est.device.name, a.method, precision, float(measured), float(est.tokens_per_second),
                          str(run.root.resolve()), a.name, time.strftime("%Y-%m-%dT%H:%M:%S%z")))
    if not out:
        raise CalibrationError(f"no stage of {run.root} recorded its throughput (metrics.tokens_per_s in "
                               f"{run.adapters_dir}/*/verticalize_adapter.json); retrain with this version")
    return out
