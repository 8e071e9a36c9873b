"""Shared fixtures: a tiny random Llama model (no weights needed) and small helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from verticalize.models.tiny import build_tiny_model

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True, scope="session")
def _no_machine_calibration(tmp_path_factory: pytest.TempPathFactory):
    """Time estimates in tests must not depend on a throughput calibration this machine's user recorded."""
    path = tmp_path_factory.mktemp("calibration") / "throughput_calibration.json"
    old = os.environ.get("VERTICALIZE_CALIBRATION")
    os.environ["VERTICALIZE_CALIBRATION"] = str(path)
    yield
    if old is None:
        os.environ.pop("VERTICALIZE_CALIBRATION", None)
    else:
        os.environ["VERTICALIZE_CALIBRATION"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LlamaForCausalLM + tokenizer with a ChatML chat template, written once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def one_torch_thread():
    """Tiny matrices: one thread is faster, and on a shared 2-core machine two threads can stall each other."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def require_program(name: str) -> str:
    """Path of a system program; skip when missing locally, fail under CI (where the README's set-up installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true; `make test` installs it (apt-get install -y {name})")
    pytest.skip(f"{name} not installed")


def make_lora_adapter(base_dir: Path, out: Path, seed: int, r: int = 4) -> Path:
    """A randomly initialised LoRA adapter (non-zero B, so it changes outputs) in PEFT's format."""
    import json

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(out)
    (out / "verticalize_adapter.json").write_text(json.dumps({"name": out.name, "method": "lora"}))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m verticalize serve RUN` on a loopback port, ready when /ready answers, until stopped."""

    def __init__(self, run: Path, *overrides: str, api_key: str | None = None, env: dict | None = None):
        import subprocess
        import sys
        import time

        import httpx

        self.port = free_port()
        self.api_key = api_key
        args = [sys.executable, "-m", "verticalize", "serve", str(run), "--port", str(self.port)]
        for item in overrides:
            args += ["--set", item]
        full_env = {k: v for k, v in os.environ.items() if k != "VERTICALIZE_API_KEY"}
        full_env.update({"VERTICALIZE_API_KEY": api_key} if api_key else {})
        full_env.update(env or {})
        self.proc = subprocess.Popen(args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1, headers=self.auth).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not become ready")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header for the key (/ready and /metrics need it when one is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, key: str | None = None):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.api_key or "unused", max_retries=0,
                             timeout=60)

    def stop(self, sig: int | None = None) -> str:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.stdout.read() if self.proc.stdout else ""
