from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.mrkdwn import (
    ELLIPSIS,
    escape,
    escape_truncated,
    format_local_date_time,
    format_local_time,
    link,
    mention,
    truncate_escaped,
    truncate_plain,
)

HOSTILE = ["<!channel>", "<!here|here>", "<@U123>", "<#C123>", "<https://evil.example|click>", "&amp;", "a & b > c < d"]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_leaves_no_control_characters(text):
    escaped = escape(text)
    assert "<" not in escaped and ">" not in escaped
    # every & now starts one of the three entities Slack decodes
    assert escaped.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "").count("&") == 0


def test_escape_only_the_three_characters_slack_decodes():
    assert escape("<@U123> & 'quotes' \"double\" *bold*") == "&lt;@U123&gt; &amp; 'quotes' \"double\" *bold*"
    assert escape("&amp;") == "&amp;amp;"  # shows literally as "&amp;", not as "&"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@given(st.text(alphabet=st.sampled_from(list("ab&<>;é ")), max_size=200), st.integers(min_value=1, max_value=120))
def test_truncation_never_cuts_an_entity(raw, limit):
    out = escape_truncated(raw, limit)
    assert len(out) <= limit
    body = out[: -len(ELLIPSIS)] if out.endswith(ELLIPSIS) and out != escape(raw) else out
    # what remains decodes to a prefix of the original: no entity was cut in half
    assert raw.startswith(_unescape(body))
    assert "&" not in body.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")


def test_truncation_keeps_short_text_and_marks_cut_text():
    assert truncate_escaped("short", 10) == "short"
    assert truncate_escaped("a" * 20, 10) == "a" * 9 + ELLIPSIS
    # "aaaaaa&lt;" cut at 8 would leave "aaaaaa&l": the partial entity goes
    assert truncate_escaped("aaaaaa&lt;bbb", 9) == "aaaaaa" + ELLIPSIS
    assert truncate_plain("x" * 80, 75) == "x" * 74 + ELLIPSIS
    with pytest.raises(ValueError):
        truncate_escaped("abc", 0)


def test_link_escapes_the_label_and_cannot_be_broken_by_the_url():
    assert link("https://bot.test/l/abc", "Open session") == "<https://bot.test/l/abc|Open session>"
    assert link("https://x.test/?a=1&b=2", "<@U1> & co") == "<https://x.test/?a=1&amp;b=2|&lt;@U1&gt; &amp; co>"
    assert link("https://x.test/a|b>c", "go") == "<https://x.test/a%7Cb&gt;c|go>"


WINTER = datetime(2026, 1, 15, 14, 30, tzinfo=timezone.utc)
SUMMER = datetime(2026, 7, 15, 14, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("moment", "tz", "expected"),
    [
        (WINTER, "Europe/Paris", "15:30 CET"),
        (SUMMER, "Europe/Paris", "16:30 CEST"),
        (WINTER, "America/New_York", "09:30 EST"),
        (WINTER, None, "14:30 UTC"),
        (WINTER, "", "14:30 UTC"),
        (WINTER, "Mars/Olympus_Mons", "14:30 UTC"),
        (WINTER, "../../etc/passwd", "14:30 UTC"),
    ],
)
def test_format_local_time(moment, tz, expected):
    assert format_local_time(moment, tz) == expected


def test_format_local_time_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        format_local_time(datetime(2026, 1, 15, 14, 30), "UTC")


@pytest.mark.parametrize(
    ("user_id", "shown"),
    [
        ("UMANAGER1", "<@UMANAGER1>"),
        ("W0123ABCD", "<@W0123ABCD>"),
        ("!channel", "!channel"),  # never <!channel>
        ("U123> <!here", "U123&gt; &lt;!here"),
        ("U123\n", "U123\n"),  # `$` would match before a trailing newline; fullmatch does not
        ("u123", "u123"),
        ("U" + "A" * 40, "U" + "A" * 31),  # longer than any Slack id: text, cut
    ],
)
def test_mention_only_marks_up_well_formed_user_ids(user_id, shown):
    assert mention(user_id) == shown


def test_format_local_date_time_gives_the_day_in_the_zone():
    moment = datetime(2026, 1, 15, 23, 30, tzinfo=timezone.utc)
    assert format_local_date_time(moment, "Europe/Paris") == "16 Jan 00:30 CET"
    assert format_local_date_time(moment, None) == "15 Jan 23:30 UTC"
    with pytest.raises(ValueError):
        format_local_date_time(datetime(2026, 1, 15), None)
