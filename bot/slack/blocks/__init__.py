"""Block Kit builders: pure functions from domain views to Slack JSON (dicts), one module
per surface of the app.

- `request`: the `/impersonate` modal, reading its state back, and the agent's DMs about a
  request (pending, outcome);
- `approval`: an approver's DM, its reminder and outcome, the deny modal, click answers;
- `session`: the agent's link and live-session DMs, more time, the expiry warning, the end;
- `watch`: the security channel (live feed, alerts, break-glass, revocation, checkpoints);
- `digest`: the access review's headline in the security channel;
- `log`: `/impersonation-log` pages and exports;
- `home`, `usage`, `flags`: the Home tab, `/impersonate help`, the account-flag modal;
- `kit` (Block Kit primitives cut to Slack's limits), `state` (reading what Slack sends back)
  and `parts` (how a request is described in every message) are what the surfaces share.

Every id comes from bot.slack.ids, every size from bot.slack.limits. User text (reasons,
tickets, account and user names, e-mails) is escaped before it enters a mrkdwn field
(bot.slack.mrkdwn) and cut to fit its field, and mrkdwn objects are sent with
`verbatim: true` so that Slack does not turn bare URLs, `#channel` or `@name` in user text
into links or mentions either (https://api.slack.com/reference/surfaces/formatting#escaping).
The only markup is our own: the link, and `<@U…>` mentions of people by their Slack id
(mrkdwn.mention, which marks up well-formed ids only). Button values and
`private_metadata` carry only ids; every click is decided again by the domain.

Message builders return `(text, blocks)`: `text` is the notification fallback Slack shows
in push notifications and screen readers; it is escaped too, and never carries the link.
"""
