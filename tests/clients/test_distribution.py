"""impersonation-kit is its own distribution: it installs from clients/python alone, needs only
PyJWT[crypto], and never imports the bot."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_kit_never_imports_the_bot():
    code = (
        "import sys, impersonation_kit, impersonation_kit.wsgi, impersonation_kit.asgi, impersonation_kit.proxy;"
        "bad = sorted(m for m in sys.modules if m == 'bot' or m.startswith('bot.') or m.startswith('flask') or m.startswith('sqlalchemy'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    # -I: isolated, so nothing from the repository's working directory is importable by accident.
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=CLIENT, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_builds_as_its_own_wheel_with_one_runtime_dependency(tmp_path):
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "impersonation-kit" and project["dependencies"] == ["PyJWT[crypto]>=2.9,<3"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(CLIENT)],
        check=True, timeout=300, capture_output=True,
    )
    (wheel,) = tmp_path.glob("impersonation_kit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "impersonation_kit/core.py" in names and not any(n.startswith(("bot/", "tests/", "examples/")) for n in names)
