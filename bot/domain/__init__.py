"""Slack-free core. Never imports slack_bolt, slack_sdk or flask (tests/domain/test_layers.py)."""
