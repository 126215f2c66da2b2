"""Every `impersonation-bot …` command in README.md and docs/*.md runs as written.

Each one is taken from the documents themselves (fenced code blocks and inline code) and
parsed by the CLI's real argparse parser. A command named in running text or a synopsis (`[--checkpoints FILE]`, `csv|json`,
`<key id>`) must name a real command and only options it has. The commands that need no
network, Slack or PostgreSQL are then run, document by document in their written order,
against a fresh SQLite database, and must succeed.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot import cli
from tests.conftest import REPO_ROOT

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PROGRAM = cli.PROG
#: marks of a synopsis rather than a command to type
PLACEHOLDER = re.compile(r"[\[\]|…<>]|\.\.\.")
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
#: what runs offline: no Slack, no network, no server (serve, web and scheduler start one)
OFFLINE = {
    cli.run_migrate, cli.run_directory_import, cli.run_accounts_flag, cli.run_audit_verify,
    cli.run_audit_checkpoint, cli.run_audit_export, cli.run_api_keys_create, cli.run_api_keys_list,
    cli.run_api_keys_revoke, cli.run_digest,
}
SETTINGS_VARIABLES = (
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "DATABASE_URL",
    "MIGRATION_DATABASE_URL", "IMPERSONATION_POLICY", "PUBLIC_BASE_URL", "PRODUCT_LAUNCH_URL",
    "SIGNING_KEY_FILE", "AUDIT_CHECKPOINT_FILE", "IMPERSONATION_ENV", "HOST", "PORT",
)


@dataclass(frozen=True)
class Documented:
    document: Path
    line: int
    text: str
    #: VAR=value assignments written before the command
    environment: tuple[str, ...]
    argv: tuple[str, ...]
    #: named in running text (`impersonation-bot audit export`), not a line to type
    reference: bool = False

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(REPO_ROOT)}:{self.line}: {self.text}"

    @property
    def synopsis(self) -> bool:
        return self.reference or bool(PLACEHOLDER.search(" ".join(self.argv)))


def _parse(document: Path, line: int, text: str, *, reference: bool = False) -> Documented | None:
    text = text.strip().removeprefix("$ ").strip()
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    environment = []
    while words and ENV_ASSIGNMENT.match(words[0]):
        environment.append(words.pop(0))
    if not words or words[0] != PROGRAM:
        return None
    return Documented(document, line, text, tuple(environment), tuple(words[1:]), reference)


def documented_commands(document: Path) -> list[Documented]:
    found: list[Documented] = []
    fenced = False
    for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            command = _parse(document, number, line)
            if command is not None:
                found.append(command)
            continue
        for span in re.findall(r"`([^`]+)`", line):
            command = _parse(document, number, span, reference=True)
            # a bare `impersonation-bot` or `impersonation-bot …` names the program, not a command
            if command is not None and command.argv and command.argv != ("…",):
                found.append(command)
    return found


ALL = [command for document in DOCUMENTS for command in documented_commands(document)]


def test_the_documents_do_show_commands():
    # the extraction itself works: these documents are known to hold commands
    by_document = {c.document.name for c in ALL}
    assert {"cli.md", "directory-import.md", "product-api.md", "postgresql.md", "watching.md", "audit.md"} <= by_document
    assert len(ALL) >= 20


def _leaf_parser(words: list[str]):
    """Follow the command words (up to the first option or placeholder) into the parser."""
    parser = cli.build_parser()
    path: list[str] = []
    for word in words:
        if word.startswith("-") or PLACEHOLDER.search(word) or word.isupper():
            break
        choices = next(
            (a.choices for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"), None
        )
        if not choices or word not in choices:
            break
        parser = choices[word]
        path.append(word)
    return parser, path


@pytest.mark.parametrize("command", ALL, ids=lambda c: c.where)
def test_the_documented_command_parses(command: Documented):
    parser = cli.build_parser()
    if command.synopsis:
        leaf, path = _leaf_parser(list(command.argv))
        if command.argv in (("--help",), ("-h",)):
            return
        assert path, f"{command.where}: names no command"
        has_subcommands = any(a.__class__.__name__ == "_SubParsersAction" for a in leaf._actions)
        assert not has_subcommands, f"{command.where}: `{' '.join(path)}` needs a subcommand"
        known = {option for action in leaf._actions for option in action.option_strings}
        written = {w.strip("[]").split("=")[0] for w in command.argv if w.strip("[]").startswith("--")}
        assert written <= known, f"{command.where}: no such option {sorted(written - known)}"
        return
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(list(command.argv))
    except SystemExit as exit_:
        assert exit_.code == 0, f"{command.where}\n{errors.getvalue()}"


def _runnable(command: Documented) -> bool:
    if command.synopsis or command.environment:  # a VAR=… prefix points at a real server
        return False
    if command.argv in (("--help",), ("-h",)):
        return True
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = cli.build_parser().parse_args(list(command.argv))
    except SystemExit:  # test_the_documented_command_parses says why
        return False
    return args.run in OFFLINE and not getattr(args, "jwks", None)


RUNNABLE_DOCUMENTS = sorted({c.document for c in ALL if _runnable(c)})


@pytest.mark.parametrize("document", RUNNABLE_DOCUMENTS, ids=lambda d: d.name)
def test_the_documented_commands_run_offline_in_order(document: Path, tmp_path, monkeypatch, capsys):
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # a working directory like the repository's: the example files, the example policy
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    shutil.copy(REPO_ROOT / "policy.example.toml", tmp_path / "policy.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'impersonation.db'}")
    monkeypatch.setenv("IMPERSONATION_ENV", "dev")
    assert cli.main(["migrate"]) == 0
    ran = 0
    for command in documented_commands(document):
        if not _runnable(command):
            continue
        try:
            code = cli.main(list(command.argv))
        except SystemExit as exit_:  # --help
            code = exit_.code
        out, err = capsys.readouterr()
        assert code == 0, f"{command.where}\nexit {code}: {err or out}"
        ran += 1
    assert ran > 0
