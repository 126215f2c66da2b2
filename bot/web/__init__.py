"""HTTP face: Slack's request endpoint, the one-time link pages, public keys (DESIGN.md)."""
