"""What each kind of outbox row shows in Slack: one registration per `outbox.Kind` in one
table, `KINDS`, which the courier (bot/slack/courier.py) dispatches on.

A registration pairs the state the row is shown from — loaded from the domain when the row is
delivered, so a late delivery shows the truth and several rows about one message collapse into
one edit — with the Block Kit builder that turns that state into what Slack shows, and says how
it reaches Slack:

- `Post`: a message in a DM or a channel: chat.postMessage the first time, chat.update of that
  same message for every later row of its target;
- `PostWithFiles`: the same, then files in the message's thread (the access review);
- `Publish`: a person's Home tab, views.publish (replaced whole; nothing to edit later);
- `NotSlack`: a kind the outbox hands to another sender, never to this courier.

A loader gets the claimed `Row` and returns the state, or None when nothing should be shown
(the row is skipped), or raises `CannotShow` when the row names something that can never be
shown (the row fails and is audited). A builder is pure: the state in, Block Kit out
(bot/slack/blocks/, one module per surface); it may return None as well.

Adding a message kind takes four edits in three files, none of them a dispatch:
1. a member of `Kind` (bot/domain/messages.py), documented with its subject and recipient;
2. `outbox.enqueue(db, Kind.X, subject_id, recipient=…)` in the transaction of the change that
   owes it, its target returned in that change's result (the adapter hands it to the
   Deliverer after the response);
3. a builder from the state to Block Kit (in bot/slack/blocks/, by surface), and a
   domain function returning that state if none does yet;
4. one registration in REGISTRATIONS below.
Optional, where the kind calls for it: URGENT_KINDS, HOME_SOURCES and the audit subjects of a
failure (REQUEST_SUBJECTS, SESSION_SUBJECTS) in bot/domain/outbox.py. Importing this module
fails, and so does tests/slack/test_kinds.py, until every kind is registered exactly once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from bot.domain import anomalies, asks, checkpoint_job, digests, extensions, home, requests, watch
from bot.domain.approvals import ApprovalAsk, Decided
from bot.domain.audit import Actor
from bot.domain.context import DomainContext
from bot.domain.messages import Delivery, Kind
from bot.domain.views import RequestView, SessionView
from bot.reports import digests as report_text
from bot.slack.blocks import approval as approval_blocks
from bot.slack.blocks import digest as digest_blocks
from bot.slack.blocks import home as home_blocks
from bot.slack.blocks import request as request_blocks
from bot.slack.blocks import session as session_blocks
from bot.slack.blocks import watch as watch_blocks
from bot.slack.blocks.kit import Message

S = TypeVar("S")


class AskStates:
    """asks.approver_message_state of a row's subject, read once per claim group
    (Delivery.claim_group: a deciding click's approver DMs, reminders and the agent's request
    DM, claimed together before any was rendered, show the same state). One per courier."""

    def __init__(self, ctx: DomainContext) -> None:
        self._ctx = ctx
        #: the latest group and its subjects' states; an earlier group's are never read again.
        #: Replaced whole, never cleared, so a caller keeps the dict it took even if another
        #: thread moves on to a new group.
        self._group: tuple[str | None, dict[str, ApprovalAsk | Decided | None]] = (None, {})

    def of(self, delivery: Delivery) -> ApprovalAsk | Decided | None:
        if delivery.claim_group is None:
            return asks.approver_message_state(self._ctx, delivery.subject_id)
        group, states = self._group
        if group != delivery.claim_group:
            states = {}
            self._group = (delivery.claim_group, states)
        if delivery.subject_id not in states:
            states[delivery.subject_id] = asks.approver_message_state(self._ctx, delivery.subject_id)
        return states[delivery.subject_id]


@dataclass(frozen=True)
class Row:
    """What a loader is given: the claimed row, the domain context and the moment it is shown."""

    ctx: DomainContext
    delivery: Delivery
    now: datetime
    asks: AskStates

    @property
    def subject_id(self) -> str:
        return self.delivery.subject_id

    @property
    def posted(self) -> bool:
        """The message was posted before: this delivery edits it."""
        return self.delivery.ref is not None

    def recipient_tz(self) -> str | None:
        """The time zone of the person a DM goes to (times are shown in it)."""
        return self.ctx.people.person(self.delivery.recipient or "").tz


class CannotShow(Exception):
    """The row names something that can never be shown (e.g. a period the policy no longer
    has): the outbox fails it for good and audits it, rather than retrying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Post(Generic[S]):
    """A message in a DM or a channel, edited in place by the later rows of its target."""

    load: Callable[[Row], S | None]
    build: Callable[[S], Message | None]


@dataclass(frozen=True)
class PostWithFiles(Generic[S]):
    """A Post followed by files in its thread (files_upload_v2's `file_uploads`)."""

    load: Callable[[Row], S | None]
    build: Callable[[S], Message | None]
    files: Callable[[S], list[dict[str, str]]]
    #: the comment that introduces the files in the thread
    comment: str


@dataclass(frozen=True)
class Publish(Generic[S]):
    """A person's Home tab, published whole (views.publish) to the row's subject."""

    load: Callable[[Row], S | None]
    build: Callable[[S], dict[str, Any]]


@dataclass(frozen=True)
class NotSlack:
    """A kind the outbox hands to another sender (bot/domain/outbox.py `_deliver_row`)."""

    #: who sends it, for the reader and the log
    sender: str


Registration = Post[Any] | PostWithFiles[Any] | Publish[Any] | NotSlack


# ---------------------------------------------------------------------------- the agent's DMs


def can_request_extension(ctx: DomainContext, agent_slack_id: str) -> bool:
    powers = requests.agent_powers(ctx, agent_slack_id)
    return bool(powers and powers.can_request_extension)


@dataclass(frozen=True)
class AgentDm:
    """What the agent's DM about a granted request rests on now: the news about it
    (watch.agent_news) and, only where the DM shows them, what the live session offers and
    the grant with its link."""

    news: watch.AgentNews
    can_extend: bool = False
    extension: Decided | None = None
    grant: requests.Granted | RequestView | None = None


def agent_dm(row: Row) -> AgentDm:
    news = watch.agent_news(row.ctx, row.subject_id, now=row.now)
    if news.live is not None and news.extension_ask is None:
        can_extend = can_request_extension(row.ctx, news.live.request.agent_slack_id)
        return AgentDm(news, can_extend=can_extend, extension=extensions.last_extension_outcome(row.ctx, news.live.id))
    if news.live is not None or news.over is not None or news.lapsed is not None or news.decided is not None:
        return AgentDm(news)
    return AgentDm(news, grant=requests.link_message_state(row.ctx, row.subject_id, now=row.now))


def agent_dm_message(dm: AgentDm) -> Message | None:
    """The agent's DM as it should read now: the link while it can be opened (derived again:
    a redelivery carries the same link, never a new one), then the live session (with how more
    time was decided, or that it is waiting for approvers), then how it ended."""
    news = dm.news
    if news.live is not None and news.extension_ask is not None:
        return session_blocks.extension_pending_message(news.extension_ask)
    if news.live is not None:
        extension = session_blocks.extension_outcome_message(dm.extension, can_request_extension=dm.can_extend) if dm.extension else None
        return extension or session_blocks.session_active_message(news.live, can_request_extension=dm.can_extend)
    if news.over is not None:
        return session_blocks.session_over_message(news.over)
    if news.lapsed is not None:
        return session_blocks.link_lapsed_message(news.lapsed)
    if news.decided is not None:
        return request_blocks.request_outcome_message(news.decided)
    if isinstance(dm.grant, requests.Granted):
        return session_blocks.grant_message(dm.grant)
    if isinstance(dm.grant, RequestView):  # unopened past its window, not yet marked lapsed
        return session_blocks.link_lapsed_message(dm.grant)
    return None


def agent_request_message(state: ApprovalAsk | Decided) -> Message | None:
    """The agent's "approval needed" DM: who was asked while pending, the outcome once decided
    (an approval says the link follows in the next message). Asks for more time are shown in
    the session's DM instead."""
    if state.extension is not None:
        return None
    if isinstance(state, ApprovalAsk):
        return request_blocks.pending_message(requests.Pending(state.request, state.request.approvals_required, state))
    return request_blocks.request_outcome_message(state)


@dataclass(frozen=True)
class ExpiryWarning:
    session: SessionView
    now: datetime
    live: bool
    can_extend: bool
    posted: bool


def expiry_warning(row: Row) -> ExpiryWarning | None:
    session = watch.session_view(row.ctx, row.subject_id)
    if session is None:
        return None
    live = watch.is_live(session, row.now)
    can_extend = live and can_request_extension(row.ctx, session.request.agent_slack_id)
    return ExpiryWarning(session, row.now, live, can_extend, row.posted)


def expiry_warning_message(shown: ExpiryWarning) -> Message | None:
    """The expiry warning while the session is live; once it is over, a warning already shown
    loses its buttons and one never shown is not sent late."""
    if shown.live:
        return session_blocks.expiry_warning_message(shown.session, now=shown.now, can_request_extension=shown.can_extend)
    return session_blocks.session_over_message(shown.session) if shown.posted else None


def revoked_session(row: Row) -> SessionView | None:
    session = watch.session_view(row.ctx, row.subject_id)
    return session if session is not None and session.state == "revoked" else None


# ---------------------------------------------------------------------------- approvers' DMs


@dataclass(frozen=True)
class Ask:
    """An ask as one approver's DM shows it: pending or decided, in their time zone."""

    state: ApprovalAsk | Decided
    tz_name: str | None
    posted: bool


def ask(row: Row) -> Ask | None:
    state = row.asks.of(row.delivery)
    return Ask(state, row.recipient_tz(), row.posted) if state is not None else None


def approver_message(shown: Ask) -> Message | None:
    """The ask (Approve / Deny) while the request or extension is pending; its outcome, without
    buttons, once decided — whether this edits the DM or is its first post (a DM still owed
    when the decision came never offers a stale choice)."""
    if isinstance(shown.state, ApprovalAsk):
        return approval_blocks.approval_request_message(shown.state, tz_name=shown.tz_name)
    return approval_blocks.approver_outcome_message(shown.state, tz_name=shown.tz_name)


def reminder_message(shown: Ask) -> Message | None:
    """A reminder while the ask is pending; once decided, a reminder already posted is edited
    to the outcome (no stale buttons), and one not yet posted is not sent."""
    if isinstance(shown.state, ApprovalAsk):
        return approval_blocks.approval_reminder_message(shown.state, tz_name=shown.tz_name)
    return approval_blocks.approver_outcome_message(shown.state, tz_name=shown.tz_name) if shown.posted else None


# ---------------------------------------------------------------------------- the security channel


def alerts(row: Row) -> list[anomalies.AlertView] | None:
    """The claimed alert and those merged into it (Delivery.batch), those still known."""
    return anomalies.alert_views(row.ctx, row.delivery.batch or (row.subject_id,), now=row.now) or None


def alert_message(views: list[anomalies.AlertView]) -> Message:
    return watch_blocks.alert_message(views[0]) if len(views) == 1 else watch_blocks.alert_summary_message(views)


def break_glass_request(row: Row) -> RequestView | None:
    request = requests.load_request(row.ctx, row.subject_id)
    return request if request is not None and request.break_glass else None


def digest_report(row: Row) -> digests.DigestReport:
    """The access review of the period the row names (its key), built now from the database:
    a retried delivery reports the same period as it stands."""
    try:
        period = digests.period_of_key(row.ctx.policy, row.subject_id)
    except digests.PeriodError:
        raise CannotShow("unknown_period") from None
    return digests.make_report(row.ctx, period, by=Actor.system("scheduler"), now=row.now)


def report_files(report: digests.DigestReport) -> list[dict[str, str]]:
    """The full review as Markdown, HTML and CSV; small, so sent from memory."""
    return [
        {"content": report_text.render(report, fmt), "filename": report_text.filename(report, fmt), "title": f"Access review {report.period.key} ({fmt.upper()})"}
        for fmt in report_text.FORMATS
    ]


# ---------------------------------------------------------------------------- the table


REGISTRATIONS: tuple[tuple[Kind, Registration], ...] = (
    (Kind.AGENT, Post(load=agent_dm, build=agent_dm_message)),
    (Kind.AGENT_REQUEST, Post(load=lambda row: row.asks.of(row.delivery), build=agent_request_message)),
    (Kind.WARNING, Post(load=expiry_warning, build=expiry_warning_message)),
    (Kind.NOTICE, Post(load=revoked_session, build=session_blocks.revoked_notice_message)),
    (Kind.APPROVER, Post(load=ask, build=approver_message)),
    (Kind.REMINDER, Post(load=ask, build=reminder_message)),
    (Kind.FEED, Post(load=lambda row: watch.feed_view(row.ctx, row.subject_id, now=row.now), build=watch_blocks.security_feed_message)),
    (Kind.ALERT, Post(load=alerts, build=alert_message)),
    (Kind.BREAK_GLASS, Post(load=break_glass_request, build=watch_blocks.break_glass_alert)),
    (Kind.CHECKPOINT, Post(load=lambda row: checkpoint_job.checkpoint_for(row.ctx, row.subject_id), build=watch_blocks.checkpoint_message)),
    (
        Kind.DIGEST,
        PostWithFiles(
            load=digest_report, build=digest_blocks.digest_message, files=report_files, comment="The full review: Markdown, HTML and CSV."
        ),
    ),
    (Kind.HOME, Publish(load=lambda row: home.home_view(row.ctx, row.subject_id, now=row.now), build=home_blocks.home_tab)),
    (Kind.WEBHOOK, NotSlack(sender="DomainContext.webhook_sender (bot/webhooks/sender.py)")),
)


def one_each(registrations: Iterable[tuple[Kind, Registration]]) -> dict[Kind, Registration]:
    """The table, refused unless every kind is registered exactly once: a kind left out
    would be a row nobody can send, a kind registered twice an ambiguity."""
    table: dict[Kind, Registration] = {}
    for kind, registration in registrations:
        if kind in table:
            raise ValueError(f"outbox kind {kind.value!r} is registered twice")
        table[kind] = registration
    missing = [kind.value for kind in Kind if kind not in table]
    if missing:
        raise ValueError(f"outbox kinds without a registration: {', '.join(missing)}")
    return table


KINDS: dict[Kind, Registration] = one_each(REGISTRATIONS)
