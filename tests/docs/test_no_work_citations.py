"""Comments and docs say why by citing what a maintainer can read (an RFC, Slack's docs, the
code), never the tracker or a work session they cannot look up: "issue 12", "#12 point 3",
"session 4" appear nowhere in the shipped code, its tests, migrations, benchmarks or docs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEARCHED = ("bot", "migrations", "tests", "bench", "docs", "scripts", "README.md")
SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".html", ".j2", ".txt", ".sh", ""}
#: a tracker or work-session reference: "issue 12", "issues #3", "point 4", "session 7"
CITATION = re.compile(r"\b(?:[Ii]ssues? ?#?\d+|[Pp]oint \d+|[Ss]ession \d+)\b")


def citations(text: str) -> list[str]:
    return CITATION.findall(text)


def searched_files() -> list[Path]:
    files: list[Path] = []
    for name in SEARCHED:
        path = ROOT / name
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files += [p for p in candidates if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    return files


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("# see issue 12 for why", ["issue 12"]),
        ("(Issue #7, point 3)", ["Issue #7", "point 3"]),
        ("measured in session 4", ["session 4"]),
        ("RFC 7519 section 4.1; the session's 30 minutes; issued_at", []),
    ],
)
def test_the_pattern_finds_tracker_references_and_nothing_else(text, found):
    assert citations(text) == found


def test_nothing_cites_the_tracker_or_a_work_session():
    files = searched_files()
    assert len(files) > 100  # the walk found the tree
    found = {
        f"{path.relative_to(ROOT)}: {', '.join(hits)}"
        for path in files
        if path != Path(__file__).resolve()
        for hits in [citations(path.read_text(errors="replace"))]
        if hits
    }
    assert not found, sorted(found)
