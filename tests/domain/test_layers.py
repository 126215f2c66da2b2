"""The layers of DESIGN.md: arrows point one way, `slack/`, `web/`, `jobs/`, `cli.py` →
`domain/` → `db/`; `web/` and `slack/` are side by side (the web app mounts the Bolt app it is
given, and both hand what a change owed to the one Deliverer, bot/domain/ports.py); `slack/`
reaches the database only through the domain; and no module of bot/ imports, directly or not,
one that imports it. Checked on the source with `ast`, so an import inside a function counts
too (only an import under `if TYPE_CHECKING:`, never run, may close a cycle)."""
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


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, *, runtime_only: bool):
    """Every node of `tree`; with `runtime_only`, none under `if TYPE_CHECKING:` (its `else:`
    still runs)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if runtime_only and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def imports_of(source: str, module: str, *, is_package: bool = False, runtime_only: bool = False) -> set[str]:
    """Every module a source file imports, relative imports resolved against `module`;
    `runtime_only`: leaving out the imports under `if TYPE_CHECKING:`."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _nodes(ast.parse(source), runtime_only=runtime_only):
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


def bot_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(BOT.rglob("*.py"))}


def import_graph(*, runtime_only: bool = True) -> dict[str, set[str]]:
    """Which bot modules each bot module imports. `from bot.x import y` counts as importing
    bot.x.y when that is a module, else bot.x; importing a module runs its packages'
    `__init__` too, so that counts as well."""
    modules = bot_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for imported in imports_of(
            path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py", runtime_only=runtime_only
        ):
            name = imported
            while name and name not in modules:
                name = name.rpartition(".")[0]
            while name and name != module and not module.startswith(name + "."):
                edges.add(name)
                name = name.rpartition(".")[0]
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # iterative depth-first search: (node, its successors still to visit)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_domain_imports_no_slack_web_or_outer_layer():
    assert violations(BOT / "domain", FRAMEWORKS + OUTER_LAYERS) == []


def test_db_imports_nothing_above_it():
    assert violations(BOT / "db", FRAMEWORKS + OUTER_LAYERS + ("bot.domain",)) == []


#: what the web face may import of Slack: Bolt's Flask adapter, which mounts the Bolt app
#: (built by bot.slack.app and handed over by bot/wiring.py) at /slack/events
WEB_MAY_IMPORT_OF_SLACK = ("slack_bolt.adapter.flask",)


def test_web_imports_nothing_of_slack_but_the_bolt_adapter():
    problems = [
        found
        for found in violations(BOT / "web", ("bot.slack", "slack_bolt", "slack_sdk"))
        if not any(found.endswith(f" imports {allowed}") or f" imports {allowed}." in found for allowed in WEB_MAY_IMPORT_OF_SLACK)
    ]
    assert problems == []


def test_slack_reaches_the_database_only_through_the_domain():
    assert violations(BOT / "slack", ("bot.db", "sqlalchemy")) == []


def test_no_module_of_bot_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle_and_the_graph_is_not_empty():
    # Guards: the check must be able to fail, and it must see the real imports.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert {"bot.domain.context", "bot.db.models", "bot.db"} <= graph["bot.domain.outbox"]
    assert "bot.web.landing" in graph["bot.web.app"]


def test_imports_under_type_checking_are_left_out_of_the_runtime_graph():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.web import app\nelse:\n    from bot.db import models\n"
    assert "bot.web.app" not in imports_of(source, "bot.domain.x", runtime_only=True)
    assert "bot.db.models" in imports_of(source, "bot.domain.x", runtime_only=True)
    assert "bot.web.app" in imports_of(source, "bot.domain.x")


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
