"""Scheduled work (APScheduler). Jobs only notify and tidy: expiry is decided by comparing
`expires_at` with the clock at every use, so a stopped scheduler never extends access
(DESIGN.md "Lifecycle")."""
