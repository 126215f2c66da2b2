"""The layers of DESIGN.md: arrows point one way, `slack/`, `web/`, `jobs/`, `cli.py` →
`domain/` → `db/`. Checked on the source with `ast`, so an import inside a function counts too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BOT = REPO_ROOT / "bot"
#: the Slack and web stacks, and the faces of this app that sit above the domain
OUTER_LAYERS = ("bot.slack", "bot.web", "bot.jobs", "bot.cli", "bot.wiring", "bot.local", "bot.reports")
FRAMEWORKS = ("slack_bolt", "slack_sdk", "flask", "werkzeug", "gunicorn")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module a source file imports, relative imports resolved against `module`."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    problems = []
    for path in sorted(folder.rglob("*.py")):
        module = module_name(path)
        for imported in sorted(imports_of(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                problems.append(f"{path.relative_to(REPO_ROOT)} imports {imported}")
    return problems


def test_domain_imports_no_slack_web_or_outer_layer():
    assert violations(BOT / "domain", FRAMEWORKS + OUTER_LAYERS) == []


def test_db_imports_nothing_above_it():
    assert violations(BOT / "db", FRAMEWORKS + OUTER_LAYERS + ("bot.domain",)) == []


def test_the_domain_is_not_empty():
    # Guard: the walk above must see the real modules.
    assert {"policy", "requests", "audit", "directory"} <= {p.stem for p in (BOT / "domain").glob("*.py")}


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import slack_sdk", "bot.domain.x", "slack_sdk"),
        ("from flask import Flask", "bot.domain.x", "flask"),
        ("import slack_bolt.app.app as bolt", "bot.domain.x", "slack_bolt.app.app"),
        ("def f():\n    from slack_sdk.web import WebClient", "bot.domain.x", "slack_sdk.web"),
        ("from ..slack import blocks", "bot.domain.x", "bot.slack.blocks"),
        ("from ..web.app import create_web_app", "bot.domain.x", "bot.web.app"),
        ("import importlib\nimportlib.import_module('flask')", "bot.domain.x", "flask"),
        ("from . import audit", "bot.domain.x", "bot.domain.audit"),
    ],
)
def test_the_import_walk_sees_every_form_of_import(source, module, expected):
    assert expected in imports_of(source, module)
