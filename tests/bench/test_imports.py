"""The benchmarks stand on the shipped code only: a module of bench/ that imported the test
suite would measure (and break with) test scaffolding, and would not run from a checkout
without tests/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def imported_modules(source: str) -> set[str]:
    """Every module an `import` or `from … import` names, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imports_tests(source: str) -> bool:
    return any(name == "tests" or name.startswith("tests.") for name in imported_modules(source))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tests.slack.signed import slash_command", True),
        ("import tests.fakes.slack_api", True),
        ("def storm():\n    from tests.slack.recording_client import RecordingWebClient\n", True),
        ("from bot.local.signing import signed_headers", False),
        ("from bench import payloads", False),
        ("import testsuite_helpers", False),
    ],
)
def test_imports_tests_reads_every_import(source: str, expected: bool) -> None:
    assert imports_tests(source) is expected


@pytest.mark.parametrize("module", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_no_bench_module_imports_the_test_suite(module: Path) -> None:
    assert not imports_tests(module.read_text()), f"bench/{module.name} imports from tests/"
