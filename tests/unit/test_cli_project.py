import subprocess
import sys
from pathlib import Path

import yaml

from verticalize.config import load_config


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verticalize", *args], capture_output=True, text=True, cwd=cwd)


def test_init_writes_loadable_commented_project(tmp_path: Path):
    r = _cli("init", str(tmp_path / "proj"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "proj" / "project.yaml").read_text(encoding="utf-8")
    assert "# LoRA rank r" in text
    cfg = load_config(tmp_path / "proj" / "project.yaml")
    assert cfg.project.docs == [str(tmp_path / "proj" / "docs")]
    assert _cli("init", str(tmp_path / "proj")).returncode == 2


def test_config_show_and_bad_key():
    r = _cli("config", "show", "--set", "train.lora.r=4")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["train"]["lora"]["r"] == 4
    r = _cli("config", "show", "--set", "train.lora.rnk=4")
    assert r.returncode == 2
    assert "train.lora.rnk" in r.stderr and "train.lora.r" in r.stderr and "Traceback" not in r.stderr
