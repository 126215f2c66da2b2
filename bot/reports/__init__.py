"""Report files rendered from what the domain returns: the audit log's exports (CSV, JSON,
the access report in HTML or Markdown, the events as JSON Lines) and the access reviews
(Markdown, HTML, CSV), from one Jinja2 environment over `bot/templates` (templates.py).
The domain only gathers and audits the data; it renders nothing."""
