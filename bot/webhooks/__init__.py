"""The outbox's HTTP face for notification webhooks (bot/domain/webhooks.py)."""
