"""Ollama: a `Modelfile` next to an exported GGUF (FROM, TEMPLATE, stop PARAMETERs, SYSTEM).

Ollama templates are Go templates, not Jinja; the ChatML family (SmolLM2, Qwen, the tiny test model) has a fixed
Go form, written here. Other chat templates are left to Ollama, which reads `tokenizer.chat_template` from the
GGUF and matches it against the templates it knows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHATML_GO_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
CHATML_STOPS = ["<|im_end|>", "<|im_start|>"]


def is_chatml(chat_template: str | None) -> bool:
    return bool(chat_template) and "<|im_start|>" in chat_template and "<|im_end|>" in chat_template


def _quoted(text: str) -> str:
    # Ollama's multi-line strings are delimited by triple quotes; a triple quote inside would end them early.
    return '"""' + text.replace('"""', '"\u200b""') + '"""'


def modelfile_text(gguf_name: str, chat_template: str | None, system_prompt: str | None,
                   eos_token: str | None = None, temperature: float | None = None) -> str:
    lines = [f"# Written by `verticalize export --to ollama`. Create the model with: ollama create NAME -f Modelfile",
             f"FROM ./{gguf_name}"]
    stops: list[str] = []
    if is_chatml(chat_template):
        lines.append(f"TEMPLATE {_quoted(CHATML_GO_TEMPLATE)}")
        stops = list(CHATML_STOPS)
    else:
        lines.append("# TEMPLATE left out: Ollama uses the chat template stored in the GGUF (not ChatML).")
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature}")
    if system_prompt:
        lines.append(f"SYSTEM {_quoted(system_prompt)}")
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, chat_template: str | None, system_prompt: str | None,
                    eos_token: str | None = None) -> dict[str, Any]:
    path = gguf_path.parent / "Modelfile"
    path.write_text(modelfile_text(gguf_path.name, chat_template, system_prompt, eos_token), encoding="utf-8")
    parsed = parse_modelfile(path)
    problems = validate_modelfile(parsed, path.parent)
    if problems:
        raise ValueError(f"invalid Modelfile {path}: " + "; ".join(problems))
    return {"path": str(path), "from": parsed["FROM"][0], "template": "chatml" if "TEMPLATE" in parsed else "gguf",
            "stops": [p.split(" ", 1)[1].strip('"') for p in parsed.get("PARAMETER", []) if p.startswith("stop ")]}


_INSTRUCTION = re.compile(r'^(FROM|TEMPLATE|PARAMETER|SYSTEM|ADAPTER|LICENSE|MESSAGE)\s+(.*)$', re.S)


def parse_modelfile(path: Path) -> dict[str, list[str]]:
    """Instruction → values, with triple-quoted multi-line values joined (enough to check what we write)."""
    out: dict[str, list[str]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            raise ValueError(f"{path}: line {i}: not a Modelfile instruction: {line[:60]!r}")
        key, value = m.group(1), m.group(2)
        if value.startswith('"""'):
            while not (len(value) >= 6 and value.endswith('"""')) and i < len(lines):
                value += "\n" + lines[i]
                i += 1
            value = value[3:-3]
        out.setdefault(key, []).append(value)
    return out


def validate_modelfile(parsed: dict[str, list[str]], folder: Path) -> list[str]:
    problems = []
    if len(parsed.get("FROM", [])) != 1:
        problems.append("exactly one FROM is required")
    elif not (folder / parsed["FROM"][0]).is_file():
        problems.append(f"FROM {parsed['FROM'][0]}: no such file next to the Modelfile")
    for tpl in parsed.get("TEMPLATE", []):
        if tpl.count("{{") != tpl.count("}}"):
            problems.append("TEMPLATE has unbalanced {{ }}")
        if tpl.count("{{- if") + tpl.count("{{ if") + tpl.count("{{- range") + tpl.count("{{ range") != \
                tpl.count("{{ end }}"):
            problems.append("TEMPLATE blocks (if/range) are not all closed with {{ end }}")
    return problems
