"""An access review rendered as Markdown, HTML and CSV: every figure shown, user text inert."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from bot.domain.digests import AccountRow, ChainResult, ConcentrationRow, DigestReport, Period
from bot.reports.digests import render

MONDAY = datetime(2030, 1, 7, 9, 0, tzinfo=timezone.utc)
HOSTILE = "Evil | <script>alert(1)</script> *bold* [x](http://evil.example) =cmd()"


def report(period_key: str = "week-2030-01-07", *, name: str = "ACME Corp") -> DigestReport:
    acme = AccountRow("acme", name, 5, 1, ("sensitive",))
    return DigestReport(
        Period(period_key, "the week to 7 Jan 2030", MONDAY, MONDAY, "weekly"), MONDAY,
        requests=6, granted=5, sessions=5, blocked=1, by_outcome=(("ended", 5),), by_agent=(), agents=1,
        by_account=(acme,), accounts=1, decisions=0, deciders=(), median_seconds_to_decide=None, sensitive=(acme,),
        alerts=(), no_ticket=0, no_ticket_listed=(), reinitiations=0, extensions=(), break_glass=0,
        concentration=(ConcentrationRow("acme", name, "UAGENT1", 5, 5),), chain=ChainResult(True, 42, 3),
    )


def test_renderings_make_user_text_inert():
    hostile = report(name=HOSTILE)
    markdown = render(hostile, "md")
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown
    assert "\\*bold\\*" in markdown and "\\[x\\](http://evil.example)" in markdown and "Evil \\|" in markdown
    html = render(hostile, "html")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Content-Security-Policy" in html
    rows = list(csv.reader(io.StringIO(render(hostile, "csv"))))
    assert rows[0] == ["section", "key", "value", "detail"]
    assert ["totals", "sessions", "5", ""] in rows
    (concentration,) = [r for r in rows if r[0] == "concentration"]
    assert concentration[:3] == ["concentration", "acme", "100"]


def test_a_formula_in_a_cell_is_defused():
    assert "'=HYPERLINK(1)" in render(report("=HYPERLINK(1)"), "csv")


def test_the_chain_verification_is_stated():
    assert "The hash chain verifies from the first event" in render(report(), "md")
