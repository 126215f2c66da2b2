"""The report environment's escaping: CSV cells a spreadsheet would run, Markdown made inert."""
from __future__ import annotations

import pytest

from bot.reports.templates import csv_cell, markdown_text


@pytest.mark.parametrize(
    ("value", "cell"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=b", "a=b"), (None, ""), (3, "3")],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(value, cell):
    assert csv_cell(value) == cell


@pytest.mark.parametrize(
    ("value", "inert"),
    [("a|b", "a\\|b"), ("<@U1>", "&lt;@U1&gt;"), ("x\n- y", "x - y"), ("![i](http://x)", "\\!\\[i\\](http://x)"), ("`code`", "\\`code\\`"), (None, "")],
)
def test_markdown_text(value, inert):
    assert markdown_text(value) == inert
