"""The one Jinja2 environment every report is rendered from, and the escaping it applies.

- HTML (`*.html.j2`): autoescape on; each page also carries a Content-Security-Policy that
  forbids scripts and remote content, in case it is opened from a mail or a shared drive.
- Markdown (`*.md.j2`): Markdown has no autoescape, so every value a template outputs goes
  through `markdown_text` (the environment's `finalize`) and a template cannot forget it:
  line breaks become spaces (a value never starts a heading, list or table row), `&`, `<`
  and `>` become entities (no raw HTML, no autolinks), and Markdown punctuation is
  backslash-escaped (no links, images or emphasis, and `|` cannot split a table cell).
- CSV (not a template): `csv_cell` defuses a cell a spreadsheet would run as a formula.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_eval_context, select_autoescape
from jinja2.nodes import EvalContext

from bot.domain.log_query import SessionEntry

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

#: OWASP "CSV Injection": cells that a spreadsheet would read as a formula
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]|!~#")


def csv_cell(value: object) -> str:
    """A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
    `'`, so a spreadsheet shows it as text instead of running it (OWASP "CSV Injection");
    the csv module quotes separators, quotes and line breaks."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class RawMarkdown(str):
    """Text of ours that goes into Markdown as it is (e.g. a checkpoint in a code block)."""


def markdown_text(value: object) -> str:
    """Any value as inert Markdown inline text (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, RawMarkdown):
        return str(value)
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + char if char in _MARKDOWN_PUNCTUATION else char for char in text)


def readable_utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "no decisions"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def staff(entry: SessionEntry) -> str:
    return entry.agent_email or entry.agent_slack_id


#: how the access report words a session's outcome and who granted it
OUTCOME_WORDS = {
    "live": "still open",
    "ended": "ended by the staff member",
    "expired": "expired at its time limit",
    "revoked": "revoked by security",
}
GRANTED_WORDS = {
    "policy": "policy (no approval needed)",
    "approval": "approved by",
    "break_glass": "emergency access (break-glass), reviewed by security",
}


@pass_eval_context
def _finalize(eval_context: EvalContext, value: object) -> object:
    """Every value a Markdown template outputs (autoescape off: `*.md.j2`) is made inert
    text; HTML templates escape it instead."""
    return value if eval_context.autoescape else markdown_text(value)


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), disabled_extensions=("md.j2",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    environment.filters["utc"] = readable_utc
    environment.filters["duration"] = duration_text
    environment.filters["staff"] = staff
    environment.globals.update(outcome_words=OUTCOME_WORDS, granted_words=GRANTED_WORDS)
    return environment


ENVIRONMENT = _environment()
