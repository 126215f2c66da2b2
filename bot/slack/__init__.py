"""The Slack face (DESIGN.md "Layers"): the Bolt app, its listeners, Block Kit builders,
ids, limits and mrkdwn escaping, and the Slack implementations of the domain's ports.
Thin by rule: parse a payload, call one domain service, render with a builder, make one
Slack call."""
