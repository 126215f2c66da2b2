"""Local mode: `serve` without Slack credentials runs the real bot against a local workspace,
a web page that plays Slack for it (docs/local-workspace.md). The Slack stand-in it is built
on — the Web API (webapi.py), response URLs (response_urls.py) and request signing
(signing.py), checked against Slack's reference data where present (reference.py) — is the
test suite's too (tests/fakes, tests/slack/signed.py)."""
