"""The container image and compose file (Dockerfile, compose.yaml, scripts/container-entrypoint).

No Docker engine runs where the suite runs, so the image is not built here
(scripts/container-smoke does that where one does; docs/operations.md). What can be checked
without one is: hadolint and shellcheck on the files, the image's shape as written, compose's
role split, and the entrypoint's role dispatch with the real script."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text(encoding="utf-8"))
ENTRYPOINT = REPO_ROOT / "scripts" / "container-entrypoint"
SHELL_SCRIPTS = [ENTRYPOINT, REPO_ROOT / "scripts" / "container-smoke", REPO_ROOT / "deploy" / "postgres" / "init-roles.sh"]


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([str(BIN / "hadolint"), str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_finds_nothing_in_the_scripts():
    result = subprocess.run(
        [str(BIN / "shellcheck"), "-x", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_the_final_stage_is_slim_non_root_without_build_tools_and_checks_healthz():
    stages = _stages()
    assert len(stages) >= 2, "multi-stage: the build happens in a stage of its own"
    final = stages[-1]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.\d+-slim", DOCKERFILE, flags=re.M)
    assert final.startswith("${PYTHON_IMAGE}")
    (user,) = re.findall(r"^USER (\S+)", final, flags=re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert "apt-get" not in final and "pip install" not in final  # nothing is built or fetched here
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD .*/healthz", final, flags=re.M)
    assert 'ENTRYPOINT ["/app/scripts/container-entrypoint"]' in final
    # the Procfile's path to the console script holds inside the image too
    assert "WORKDIR /app" in final and "/app/.venv" in DOCKERFILE


def test_compose_migrates_as_the_owner_and_runs_as_the_app_role():
    services = COMPOSE["services"]
    assert {"db", "release", "web", "clock"} <= set(services)
    release, web, clock = services["release"], services["web"], services["clock"]
    assert release["command"] == ["release"] and web["command"] == ["web"] and clock["command"] == ["clock"]
    assert "impbot_owner" in release["environment"]["MIGRATION_DATABASE_URL"]
    assert release["environment"]["DB_APP_ROLE"] == "impbot_app"
    for service in (release, web, clock):
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://impbot_app:")
    for service in (web, clock):
        assert "MIGRATION_DATABASE_URL" not in service["environment"]
        assert service["depends_on"]["release"]["condition"] == "service_completed_successfully"
    assert clock["healthcheck"] == {"disable": True} and release["healthcheck"] == {"disable": True}
    init = [v for v in services["db"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert init and (REPO_ROOT / init[0].split(":")[0]).exists()


@pytest.fixture
def stub_cli(tmp_path):
    """An `impersonation-bot` first on PATH that records each call's arguments."""
    calls = tmp_path / "calls"
    stub = tmp_path / "bin" / "impersonation-bot"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(0o755)

    def run(*args: str, **env: str) -> tuple[int, list[str], str]:
        environment = {k: v for k, v in os.environ.items() if k not in ("DB_APP_ROLE", "DB_SCHEMA")}
        environment.update(env, PATH=f"{stub.parent}:{environment['PATH']}")
        result = subprocess.run([str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True, timeout=30)
        lines = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return result.returncode, lines, result.stderr

    return run


def test_the_entrypoint_dispatches_each_role(stub_cli):
    assert stub_cli() == (0, ["web"], "")
    assert stub_cli("web") == (0, ["web"], "")
    assert stub_cli("clock") == (0, ["scheduler"], "")
    assert stub_cli("release") == (0, ["migrate"], "")
    assert stub_cli("release", DB_APP_ROLE="impbot_app", DB_SCHEMA="impbot") == (
        0, ["migrate", "db grants --schema impbot --app-role impbot_app"], "",
    )
    assert stub_cli("audit", "verify", "--jwks", "x.json") == (0, ["audit verify --jwks x.json"], "")


def test_the_release_role_refuses_an_app_role_without_its_schema(stub_cli):
    code, calls, err = stub_cli("release", DB_APP_ROLE="impbot_app")
    assert code == 2 and calls == ["migrate"] and "DB_SCHEMA" in err and err.count("\n") == 1
