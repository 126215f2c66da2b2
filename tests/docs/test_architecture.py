"""docs/architecture.md is what a new maintainer reads first, so every file and folder it
names must exist: a moved module fails this test instead of leaving the map wrong."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: a repository path in backticks: `bot/slack/courier.py`, `bot/slack/blocks/`, `migrations/versions/`
NAMED_PATH = re.compile(r"`((?:bot|tests|migrations|docs|bench)/[\w./<>-]*)")


def named_paths(text: str) -> set[str]:
    """The repository paths a document names, up to any `<placeholder>` or `.` sub-name."""
    paths = set()
    for match in NAMED_PATH.finditer(text):
        path = match.group(1).split("<")[0].rstrip("/")
        # `bot/slack/courier.SlackCourier` names a module's member: keep the module's path
        if not path.endswith((".py", ".md")) and "." in path.rsplit("/", 1)[-1]:
            path = path.rsplit(".", 1)[0] + ".py"
        paths.add(path)
    return paths


def test_every_path_the_architecture_page_names_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = named_paths(text)
    assert len(paths) > 20  # the page names the files along the path of one request
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


def test_a_member_or_placeholder_is_read_as_its_module_or_folder():
    text = "`bot/slack/courier.SlackCourier` and `bot/slack/blocks/<surface>.py` and `tests/nowhere/`"
    assert named_paths(text) == {"bot/slack/courier.py", "bot/slack/blocks", "tests/nowhere"}
