"""impersonation-bot: safe, audited impersonation of customer users, driven from Slack."""
