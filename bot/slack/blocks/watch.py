"""The security channel: the live feed (one message per grant, edited in place), alerts and
their storm summaries, the break-glass alert, revocation buttons and answers, and audit
checkpoints.

Times in the channel use Slack's date token (`<!date^…>`,
https://api.slack.com/reference/surfaces/formatting#date-formatting), which every reader sees
on their own clock.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.domain.anomalies import AlertView, LiveSession, Rule
from bot.domain.checkpoints import Checkpoint
from bot.domain.revocation import Revoked, RevokedAll, RevokeRefused
from bot.domain.views import RequestView
from bot.domain.watch import FeedStatus, FeedView
from bot.slack import limits
from bot.slack.blocks.kit import Block, Message, button, context, duration_label, fields, header, message, scope_label, section, slack_date
from bot.slack.blocks.parts import ID_BUDGET, TICKET_BUDGET, account_text, fallback_subject, flags_text, mentions, reason_section, user_text, who_and_what
from bot.slack.ids import ActionId, BlockId
from bot.slack.mrkdwn import escape, escape_truncated, format_local_time, mention, truncate_escaped

_NAME_BUDGET = 300
_REVOKE_CONFIRM = (
    "Revoke this session?",
    "The agent's session ends at once; the product refuses it from now on. The agent is told, and it is audited.",
    "Revoke",
    "Cancel",
)


def revoke_all_button(alert_id: str, count: int) -> Block:
    """Revokes every session the alert is about that is live at the click, however many (the
    message shows at most LIVE_SHOWN); carries the alert id only."""
    confirm = (
        f"Revoke all {count} sessions?",
        "Every session this alert is about that is still live ends at once; each agent is told, and each revocation is audited.",
        "Revoke all",
        "Cancel",
    )
    return button(ActionId.REVOKE_ALERT_SESSIONS, f"Revoke all {count} live sessions", alert_id, style="danger", confirm=confirm)


def revoke_button(session_id: str, *, label: str = "Revoke session") -> Block:
    """Shown to everyone in the channel; only a role with `can_revoke` can use it, checked at
    the click (bot.domain.revocation)."""
    return button(ActionId.REVOKE_SESSION, label, session_id, style="danger", confirm=_REVOKE_CONFIRM)


_FEED_HEADERS = {
    FeedStatus.GRANTED: "Impersonation granted",
    FeedStatus.LIVE: "Impersonation live",
    FeedStatus.ENDED: "Impersonation ended",
    FeedStatus.EXPIRED: "Impersonation expired",
    FeedStatus.REVOKED: "Impersonation revoked",
    FeedStatus.LAPSED: "Impersonation link lapsed",
}


def _feed_status_line(view: FeedView) -> str:
    session = view.session
    if view.status == FeedStatus.GRANTED:
        return f"Link issued; not opened yet. The session lasts {duration_label(view.request.duration_minutes)} from when it is."
    if view.status == FeedStatus.LIVE and session is not None:
        line = f":large_green_circle: *Live* until {slack_date(session.expires_at)}."
        if view.warned:
            line += " :warning: Ending soon: the agent has been warned."
        return line
    when = slack_date(view.closed_at) if view.closed_at else "an unknown time"
    if view.status == FeedStatus.ENDED:
        by = " by the agent" if view.closed_by == view.request.agent_slack_id else (f" by {mention(view.closed_by)}" if view.closed_by else "")
        return f":white_circle: *Ended*{by} at {when}."
    if view.status == FeedStatus.REVOKED:
        by = f" by {mention(view.closed_by)}" if view.closed_by else ""
        return f":red_circle: *Revoked*{by} at {when}."
    if view.status == FeedStatus.LAPSED:
        return f":white_circle: *Lapsed*: the link was never opened (expired at {when})."
    return f":white_circle: *Expired* at {when}."


def _approved_by(view: FeedView) -> str:
    if view.request.break_glass:
        return "nobody: *break glass*"
    if view.approvers:
        return mentions(view.approvers)
    return "not needed (policy)"


def security_feed_message(view: FeedView) -> Message:
    """One message per granted request in the security channel, edited in place as it moves
    (granted → live → warned → ended / expired / revoked, or lapsed): what is live now, without
    scrolling through noise. **Revoke session** while it is live."""
    request, session = view.request, view.session
    pairs = [
        *who_and_what(request),
        ("Ticket", escape_truncated(request.ticket, TICKET_BUDGET) if request.ticket else "none"),
        ("Approved by", _approved_by(view)),
        (
            "Ends at",
            slack_date(session.expires_at) if session is not None else f"{duration_label(request.duration_minutes)} after the link is opened",
        ),
    ]
    blocks: list[Block] = [
        header(_FEED_HEADERS.get(view.status, "Impersonation")),
        section(_feed_status_line(view)),
        fields(pairs),
        reason_section(request),
    ]
    if view.status == FeedStatus.LIVE and session is not None:
        blocks.append({"type": "actions", "block_id": BlockId.FEED_ACTIONS.value, "elements": [revoke_button(session.id)]})
    ids = f"request {escape_truncated(request.id, ID_BUDGET)}" + (f" · session {escape_truncated(session.id, ID_BUDGET)}" if session else "")
    blocks.append(context(ids))
    text = f"{_FEED_HEADERS.get(view.status, 'Impersonation')}: {mention(request.agent_slack_id)} as {fallback_subject(request)}."
    return message(text, blocks)


def break_glass_alert(request: RequestView) -> Message:
    """Posted at once to the security channel when a break-glass role skipped approval,
    rendered by the outbox from the stored request (a break-glass
    request's `gated_by` holds the gates it skipped). Everything a reviewer needs, and never
    the link, which the request does not hold."""
    pairs = [
        ("Agent", mention(request.agent_slack_id)),
        ("Account", account_text(request)),
        ("Account flags", flags_text(request.account_flags)),
        ("Approval skipped", flags_text(request.gated_by)),
        ("Customer user", user_text(request)),
        ("Access", escape(scope_label(request.scope))),
        ("Session length", duration_label(request.duration_minutes)),
        ("Ticket", escape_truncated(request.ticket, TICKET_BUDGET) if request.ticket else "none"),
    ]
    blocks = [
        header("Break-glass impersonation"),
        section(
            f"{mention(request.agent_slack_id)} skipped approval to impersonate {user_text(request)} "
            f"in {account_text(request)} at {escape(format_local_time(request.created_at, None))}."
        ),
        fields(pairs),
        reason_section(request),
        context(f"Audited as approval.bypassed · request {escape_truncated(request.id, ID_BUDGET)}"),
    ]
    text = f"Break glass: {mention(request.agent_slack_id)} skipped approval to impersonate {fallback_subject(request)}."
    return message(text, blocks)


def _who(agent: str | None) -> str:
    return mention(agent) if agent else "someone"


def _account(view: AlertView) -> str:
    if view.account is None:
        return "an account"
    name = escape_truncated(view.account_name or view.account, _NAME_BUDGET)
    return f"{name} ({escape_truncated(view.account, ID_BUDGET)})"


def alert_line(view: AlertView) -> str:
    """One alert in a sentence, from its rule and facts (numbers and ids; user text escaped)."""
    facts = view.facts
    rule = view.rule
    if rule is Rule.ACCOUNT_BURST:
        return f"{_account(view)} had {facts.get('sessions_24h')} sessions in 24 h (more than {facts.get('limit')})."
    if rule is Rule.AGENT_SPREAD:
        return f"{_who(view.agent)} opened sessions on {facts.get('accounts_24h')} accounts in 24 h (more than {facts.get('limit')})."
    if rule is Rule.OFF_HOURS:
        at = escape(str(facts.get("at", "")))
        tz = escape_truncated(str(facts.get("tz", "UTC")), 64)
        hours = escape(str(facts.get("hours", "")))
        return f"{_who(view.agent)} started a session on {_account(view)} outside business hours on their clock ({tz}, hours {hours}) at {at}."
    if rule is Rule.FLAGGED_ACCOUNT:
        flags = escape(", ".join(str(f) for f in facts.get("flags", [])))
        return f"{_who(view.agent)} was granted a session on {_account(view)}, which is {flags}."
    if rule is Rule.REPEATED_REFUSALS:
        return f"{_who(view.agent)} was refused {facts.get('refusals_24h')} times in 24 h (blocked or denied)."
    if rule is Rule.LINK_REPLAY:
        return f"A used one-time link of {_who(view.agent)}'s on {_account(view)} was presented again {facts.get('attempts')} time(s)."
    if rule is Rule.LINK_IDENTITY_MISMATCH:
        team = escape_truncated(str(facts.get("signed_in_team") or "?"), ID_BUDGET)
        return (
            f"{_who(facts.get('signed_in_user'))} (workspace {team}) signed in with Slack to open {_who(view.agent)}'s "
            f"one-time link on {_account(view)} and was refused. The link reached someone else; it still works "
            "only for its agent until it expires."
        )
    if rule is Rule.OPTED_OUT_ATTEMPT:
        return f"{_who(view.agent)} tried to impersonate a user of {_account(view)}, which has opted out ({facts.get('attempts_24h')} attempt(s) in 24 h)."
    if rule is Rule.CONCENTRATION:
        return (
            f"{facts.get('percent')} % of {_account(view)}'s {facts.get('sessions')} sessions in the last "
            f"{facts.get('days')} days were by one agent, {_who(view.agent)}."
        )
    if rule is Rule.ACCOUNT_OPTED_OUT:
        revoked = int(facts.get("revoked") or 0)
        ended = f"{revoked} live session{'s' if revoked != 1 else ''} on it ended at once" if revoked else "no session was live on it"
        return (
            f"{_account(view)} opted out of impersonation by contract, set by {_who(facts.get('by'))} "
            f"({escape_truncated(str(facts.get('note') or ''), 300)}). Every request on it is refused from now on; {ended}."
        )
    return escape(rule.value)


_RULE_TITLES = {
    Rule.ACCOUNT_BURST: "Many sessions on one account",
    Rule.AGENT_SPREAD: "One agent on many accounts",
    Rule.OFF_HOURS: "Session outside business hours",
    Rule.FLAGGED_ACCOUNT: "Session on a sensitive or regulated account",
    Rule.REPEATED_REFUSALS: "Agent refused repeatedly",
    Rule.LINK_REPLAY: "One-time link replayed",
    Rule.OPTED_OUT_ATTEMPT: "Attempt on an opted-out account",
    Rule.LINK_IDENTITY_MISMATCH: "One-time link used by someone else",
    Rule.CONCENTRATION: "Sessions concentrated on one agent",
    Rule.ACCOUNT_OPTED_OUT: "Account opted out of impersonation",
}


def rule_title(rule: Rule) -> str:
    return _RULE_TITLES.get(rule, rule.value)


def _live_line(live: LiveSession) -> str:
    return (
        f"Live: {mention(live.agent)} as {escape_truncated(live.customer_user_name, _NAME_BUDGET)} in "
        f"{escape_truncated(live.account, ID_BUDGET)}, until {slack_date(live.expires_at)}."
    )


def alert_message(view: AlertView) -> Message:
    """One alert with its context, and **Revoke session** for each related live session."""
    blocks: list[Block] = [
        header(f"Alert: {rule_title(view.rule)}"),
        section(alert_line(view)),
    ]
    for live in view.live_sessions:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _live_line(live), "verbatim": True}, "accessory": revoke_button(live.id)})
    more = view.live_total - len(view.live_sessions)
    if more > 0:
        blocks.append(context(f"…and {more} more live session{'s' if more != 1 else ''} (the newest {len(view.live_sessions)} are shown)."))
    if view.live_total > 1:
        blocks.append({"type": "actions", "block_id": BlockId.ALERT_ACTIONS.value, "elements": [revoke_all_button(view.id, view.live_total)]})
    blocks.append(context(f"Raised {slack_date(view.raised_at)} · audited as alert.raised · alert {escape_truncated(view.id, ID_BUDGET)}"))
    text = f"Alert: {rule_title(view.rule)}."
    return message(text, blocks)


def alert_summary_message(views: Sequence[AlertView]) -> Message:
    """Several alerts that piled up while the channel's pace held them (a storm): one
    section per alert, each with **Revoke session** for its first live session, so no
    alert is lost and the channel gets one message, not dozens."""
    blocks: list[Block] = [header(f"{len(views)} alerts")]
    budget = limits.MESSAGE_BLOCKS_MAX - 2
    for view in views[:budget]:
        line = f"*{escape(rule_title(view.rule))}*: {alert_line(view)}"
        block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": _fit(line), "verbatim": True}}
        if view.live_total > 1:
            # one accessory per alert (the block budget): the button that covers them all
            block["accessory"] = revoke_all_button(view.id, view.live_total)
        elif view.live_sessions:
            block["accessory"] = revoke_button(view.live_sessions[0].id)
        blocks.append(block)
    first, last = min(v.raised_at for v in views), max(v.raised_at for v in views)
    blocks.append(context(f"Raised between {slack_date(first)} and {slack_date(last)} · each audited as alert.raised"))
    text = f"{len(views)} alerts in the security channel."
    return message(text, blocks)


def _fit(text: str) -> str:
    return truncate_escaped(text, limits.SECTION_TEXT_MAX)


def revocation_answer_text(result: Revoked | RevokedAll | RevokeRefused, *, tz_name: str | None) -> str:
    """What the person who revoked (or tried to) reads, privately."""
    if isinstance(result, RevokedAll):
        agents = ", ".join(dict.fromkeys(mention(one.session.request.agent_slack_id) for one in result.revoked))
        count = len(result.revoked)
        return f"Revoked {count} live session{'s' if count != 1 else ''} ({agents}). Each agent has been told."
    if isinstance(result, Revoked):
        session = result.session
        when = format_local_time(session.ended_at or session.expires_at, tz_name)
        return (
            f"Revoked {mention(session.request.agent_slack_id)}'s session as {user_text(session.request)} "
            f"in {account_text(session.request)} at {escape(when)}. The agent has been told."
        )
    return escape(result.message)


def checkpoint_message(checkpoint: Checkpoint) -> Message:
    """A signed checkpoint of the audit chain, kept in the channel's history (outside the
    database) so that deleting or rewriting the newest rows is detectable
    (`impersonation-bot audit verify --checkpoints`, docs/audit.md)."""
    blocks = [
        header("Audit checkpoint"),
        section(
            f"The audit log's head at {slack_date(_parse_time(checkpoint.time))}: event {checkpoint.seq}, "
            f"hash `{escape(checkpoint.hash[:16])}…`. Keep this line: it proves what the log held."
        ),
        section(f"```{escape(checkpoint.to_json())}```"),
    ]
    return message(f"Audit checkpoint: event {checkpoint.seq}.", blocks)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
