"""Block Kit and mrkdwn as the local workspace shows them: escaped, with a safe subset of
formatting (bot/local/render.py)."""
from __future__ import annotations

import pytest

from bot.local import render

NAMES = {"U0ANAAGENT": "Ana Agent"}.get


def names(slack_id: str) -> str:
    return NAMES(slack_id) or slack_id


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("*bold* and _italic_ and ~gone~", "<b>bold</b> and <i>italic</i> and <s>gone</s>"),
        ("`*not bold*`", "<code>*not bold*</code>"),
        ("```a <b>\n*x*```", "<pre>a &lt;b&gt;\n*x*</pre>"),
        ("<@U0ANAAGENT> asks", '<span class="mention">@Ana Agent</span> asks'),
        ("<https://example.com/a?b=1&amp;c=2|the ticket>",
         '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">the ticket</a>'),
        ("<!date^1700000000^{date_short}|Nov 14>", "Nov 14"),
        ("line one\n&gt; quoted", "line one<br><blockquote>quoted</blockquote>"),
        (":warning: careful :unknown:", '<span class="emoji amber">⚠</span> careful :unknown:'),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
    ],
)
def test_mrkdwn_formatting(text, html):
    assert str(render.mrkdwn(text, names)) == html


@pytest.mark.parametrize(
    "text",
    [
        "&lt;script&gt;alert(1)&lt;/script&gt;",  # Slack-escaped user text
        "<script>alert(1)</script>",  # unescaped: shown, never run
        "*<img src=x onerror=alert(1)>*",
        "<javascript:alert(1)|click me>",
        "<data:text/html,<script>alert(1)</script>|x>",
        "`</code><script>alert(1)</script>`",
        "<@U\"><script>alert(1)</script>>",
        "\x000\x00 <https://a.example|a>",
    ],
)
def test_nothing_in_a_message_becomes_markup(text):
    html = str(render.mrkdwn(text, names))
    assert "<script" not in html and "<img" not in html and "javascript:" not in html.split('href="')[-1][:12]
    assert 'href="javascript' not in html and 'href="data' not in html


def test_links_only_to_http_and_mail():
    assert str(render.mrkdwn("<javascript:alert(1)|click me>", names)) == "click me"
    assert render.safe_url("JavaScript:alert(1)") is None
    assert render.safe_url("https://example.com") == "https://example.com"


def test_a_button_with_a_script_url_is_not_a_link_and_its_attributes_are_escaped():
    block = {"type": "actions", "block_id": "b\"1", "elements": [
        {"type": "button", "action_id": "go", "text": {"type": "plain_text", "text": "<b>Go</b>"},
         "value": "x\" onclick=\"alert(1)", "url": "javascript:alert(1)"}]}
    html = str(render.block(block, names))
    assert "<a " not in html and "onclick=\"alert" not in html
    assert "&lt;b&gt;Go&lt;/b&gt;" in html and 'data-value="x&#34; onclick=&#34;alert(1)"' in html


def test_plain_text_is_never_formatted():
    assert str(render.text_object({"type": "plain_text", "text": "*a* <b>\nc"}, names)) == "*a* &lt;b&gt;<br>c"


def test_a_modal_input_shows_its_element_hint_and_error():
    block = {"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
             "hint": {"type": "plain_text", "text": "Why"}, "element": {
                 "type": "plain_text_input", "action_id": "reason_input", "multiline": True, "min_length": 10}}
    html = str(render.block(block, names, errors={"reason": "Too <short>"}))
    assert 'data-block-id="reason"' in html and "<textarea" in html and 'data-min-length="10"' in html
    assert "Why" in html and "Too &lt;short&gt;" in html


def test_a_message_without_blocks_shows_its_text():
    assert "<b>hi</b>" in str(render.message_body("*hi*", None, names))
