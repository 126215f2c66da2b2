"""Slack's response URLs for the tests: the stand-in that ships with the bot."""
from bot.local.response_urls import MAX_USES, TTL_SECONDS, FakeResponseUrls, Posted  # noqa: F401
