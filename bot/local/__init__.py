"""A stand-in for Slack that ships with the bot: its Web API (webapi.py), response URLs
(response_urls.py) and request signing (signing.py), checked against Slack's reference data
where present (reference.py). The test suite's fakes are these (tests/fakes, tests/slack/signed.py)."""
