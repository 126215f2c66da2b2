"""Request bodies as Slack sends them to the app's request URL, for the code that plays Slack
against the bot (the test suite, the benchmarks): form-encoded, with the fields Slack's
"Slash commands" documentation lists. Sign them with bot/local/signing.py."""
from __future__ import annotations

from urllib.parse import urlencode


def slash_command(
    *,
    text: str,
    user_id: str,
    trigger_id: str,
    team_id: str,
    team_domain: str,
    response_url: str,
    command: str = "/impersonate",
    channel_id: str = "C0GENERAL",
    channel_name: str = "general",
    user_name: str = "agent",
    api_app_id: str = "A1",
) -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "team_domain": team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": api_app_id,
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )
