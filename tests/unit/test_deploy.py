"""deploy/: the compose stack is safe to expose and consistent with itself, checked without a container engine
(the YAML parsed, its files and the image's build inputs looked up), and the Prometheus config validated with
promtool (which the README's test set-up installs with prometheus; required under CI=true)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from conftest import require_program

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET_VARS = ("VERTICALIZE_API_KEY", "GRAFANA_ADMIN_PASSWORD")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def test_secrets_are_required_never_defaulted():
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    for var in SECRET_VARS:
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, f"{var} is not used"
        assert all(u.startswith(":?") for u in uses), f"{var} must be ${{{var}:?...}} (required), got {uses}"
    gateway = compose()["services"]["gateway"]
    assert env_of(gateway)["VERTICALIZE_API_KEY"].startswith("${VERTICALIZE_API_KEY:?")


def test_grafana_has_no_anonymous_admin_and_a_required_password():
    env = env_of(compose()["services"]["grafana"])
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env.get("GF_SECURITY_ADMIN_PASSWORD", "").startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_only_the_keyed_gateway_is_published_beyond_loopback():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):  # no auth of their own that we set up: loopback only
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_prometheus_scrapes_with_the_key_compose_mounts():
    c = compose()
    prom_cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    job, = [j for j in prom_cfg["scrape_configs"] if j["job_name"] == "verticalize"]
    path = job["authorization"]["credentials_file"]
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    secret = Path(path).name
    assert path == f"/run/secrets/{secret}"
    assert secret in c["services"]["prometheus"]["secrets"]
    assert c["secrets"][secret] == {"environment": "VERTICALIZE_API_KEY"}  # the gateway's key, required above
    assert job["static_configs"][0]["targets"] == ["gateway:8000"]


def test_gateway_image_is_built_not_pip_installed_from_a_read_only_mount():
    gateway = compose()["services"]["gateway"]
    build = gateway["build"]
    context = (DEPLOY / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert context == ROOT and dockerfile.is_file()
    command = " ".join(gateway["command"]) if isinstance(gateway["command"], list) else gateway["command"]
    assert "pip install" not in command
    # Every COPY source exists, and what setuptools needs to build the package is among them.
    copied = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            copied += sources
    assert {"pyproject.toml", "README.md", "src"} <= set(copied)
    assert all((context / s).exists() for s in copied)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert all(f"!{s}" in ignore or f"!{s}/" in ignore for s in copied)  # the ignore file keeps what is copied
    # The run directory: mounted read-write (feedback is written there), where the command serves from, and
    # not under /run/secrets' parent (compose puts secrets in /run/secrets).
    mounts = [v.split(":") for v in gateway["volumes"]]
    run_mount, = [m for m in mounts if "RUN_DIR" in m[0]]
    target = run_mount[-1] if run_mount[-1] not in ("ro", "rw") else run_mount[-2]
    assert run_mount[-1] != "ro" and target in command.split() and not target.startswith("/run")
    assert not any(m[-1] == "ro" and "/app" in m for m in mounts)


def test_mounted_files_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_promtool_accepts_the_prometheus_config(tmp_path: Path):
    promtool = require_program("promtool")
    # The credentials file is a compose secret; promtool checks that it exists, so point it at a stand-in.
    key = tmp_path / "verticalize_api_key"
    key.write_text("stand-in-key", encoding="utf-8")
    text = (DEPLOY / "prometheus.yml").read_text(encoding="utf-8").replace("/run/secrets/verticalize_api_key",
                                                                           str(key))
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    (tmp_path / "alerts.yml").write_text((DEPLOY / "alerts.yml").read_text(encoding="utf-8"), encoding="utf-8")
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr and "alerts.yml" in out.stdout + out.stderr  # rules checked too
