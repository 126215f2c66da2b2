"""Slack's reference data for the Web API (`slack-api-ref` in ../shared/slack-reference beside
the clone), read where present and never copied into the project.

The Web API stand-in (bot/local/webapi.py) checks each call's arguments against it, and
tests/fakes/test_slack_api.py cross-checks the stand-in's method table with it. Where the
folder is absent, `find()` answers None and those checks are left out cleanly.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

#: where the reference sits for a clone of this repository: ../shared/slack-reference
DEFAULT_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "slack-reference"


class MethodNotInReference(LookupError):
    """The reference has no such Web API method."""


class SlackReference:
    """One reference folder; method files are read once, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def method(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The method's two reference files: the API description (args, errors) and the
        docs.slack.dev page (scopes, required args, JSON input, errors)."""
        with self._lock:
            if name not in self._cache:
                group = name.split(".")[0]
                methods_file = self.root / "slack-api-ref" / "methods" / group / f"{name}.json"
                docs_file = self.root / "slack-api-ref" / "docs.slack.dev" / "methods" / f"{name}.json"
                if not methods_file.is_file() or not docs_file.is_file():
                    raise MethodNotInReference(name)
                self._cache[name] = (json.loads(methods_file.read_text(encoding="utf-8")),
                                     json.loads(docs_file.read_text(encoding="utf-8")))
            return self._cache[name]

    def documented_arguments(self, name: str) -> frozenset[str]:
        ref, _docs = self.method(name)
        return frozenset(ref.get("args", {}))

    def documented_errors(self, name: str) -> set[str]:
        ref, docs = self.method(name)
        return (set(ref.get("errors", {})) | set(docs.get("errors", {}))
                | _example_errors(ref.get("response", {}).get("examples", [])) | _example_errors(docs.get("examples")))

    def common_errors(self) -> set[str]:
        path = self.root / "slack-api-ref" / "methods" / "_errors" / "common.json"
        return set(json.loads(path.read_text(encoding="utf-8"))["errors"])

    def bot_scopes_anywhere(self) -> set[str]:
        """Every bot scope some method of the reference names."""
        known: set[str] = set()
        for path in (self.root / "slack-api-ref" / "docs.slack.dev" / "methods").glob("*.json"):
            method = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(method, dict) and isinstance(method.get("scope"), dict):
                known |= set(method["scope"].get("bot", []))
        return known


def _example_errors(examples: Any) -> set[str]:
    texts = examples if isinstance(examples, list) else [e.get("example") for e in (examples or {}).values()]
    found = set()
    for text in texts:
        try:
            body = json.loads(text) if isinstance(text, str) else text
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("ok") is False:
            found.add(body["error"])
    return found


def find(path: Path | None = None) -> SlackReference | None:
    """The reference at `path` (default ../shared/slack-reference), or None where it is absent."""
    root = path or DEFAULT_PATH
    return SlackReference(root) if (root / "slack-api-ref").is_dir() else None
