"""docs/benchmarks.md is generated: a run of some suites replaces their sections, keeps the
others as they were, and stamps what it wrote with the moment, the machine and the command."""
from __future__ import annotations

import datetime as dt

from bench import report

NOW = dt.datetime(2026, 12, 4, 7, 30, tzinfo=dt.timezone.utc)


def section(name: str, body: str) -> str:
    return report.stamp(f"## {name} title\n\n{body}\n", name=name, machine="2 cores (test)", now=NOW)


def test_stamp_marks_the_section_and_says_when_where_and_how_to_rerun() -> None:
    text = section("http", "| figures |")
    assert text.startswith("<!-- bench:http -->\n## http title\n")
    assert "_Measured 2026-12-04 07:30 UTC on 2 cores (test). Rerun: `./scripts/bench --only http`._" in text
    assert text.rstrip().endswith("<!-- /bench:http -->")


def test_a_run_of_one_suite_replaces_its_section_and_keeps_the_others() -> None:
    old = report.document("", {"http": section("http", "old http figures"), "kit": section("kit", "kit figures")})
    new = report.document(old, {"http": section("http", "new http figures")})
    assert "new http figures" in new
    assert "old http figures" not in new
    assert "kit figures" in new
    assert new.index("<!-- bench:http -->") < new.index("<!-- bench:kit -->")


def test_text_outside_the_sections_is_not_kept() -> None:
    old = report.document("", {"kit": section("kit", "kit figures")}) + "\n## Earlier runs, by hand\n\nwhat we tried\n"
    new = report.document(old, {"http": section("http", "figures")})
    assert "Earlier runs" not in new
    assert "kit figures" in new


def test_the_head_lists_every_suite_with_its_command() -> None:
    head = report.document("", {})
    for name in report.NAMES:
        assert f"`./scripts/bench --only {name}`" in head
