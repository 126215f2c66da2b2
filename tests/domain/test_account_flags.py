"""bot/domain/account_flags.py: flags are set and cleared with who and why; an opt-out ends
every session live on the account at once (audited, agent and security feed told through the
outbox, the product API answering "revoked"), and no session is ever left live on an
opted-out account, even when the opt-out races redemptions."""
from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot.db.models import AccountFlag, AuditEvent, ImpersonationSession
from bot.domain import account_flags, links, outbox, product_api, requests
from bot.domain.account_flags import DirectoryError
from bot.domain.audit import Actor, verify_chain
from bot.domain.clock import utcnow
from bot.domain.requests import AgentIdentity, RequestForm
from bot.domain.sessions import SessionStatus
from tests.fakes.directory_data import load_directory

REVOPS = Actor(slack_id="UREVOPS1", role="cli")


@pytest.fixture
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path)


def _grant(ctx, account="acme", user="u-bob", agent="UAGENT1"):
    form = RequestForm(account=account, user=user, reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    granted = requests.submit_request(ctx, AgentIdentity(agent), form)
    assert isinstance(granted, requests.Granted), granted
    return granted.link.url.rsplit("/", 1)[1]


def _live(ctx, **kw):
    return links.redeem(ctx, _grant(ctx, **kw)).session


def _opt_out(ctx, account="acme"):
    return account_flags.change_flag(ctx.sessions, account_external_id=account, flag=AccountFlag.OPTED_OUT, on=True, actor=REVOPS, note="MSA §4.2: no vendor access")


def _events(ctx, type_):
    with ctx.sessions() as db:
        return list(db.execute(select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.seq)).scalars())


def test_an_opt_out_revokes_every_live_session_on_the_account_at_once(ctx, directory):
    first, second = _live(ctx), _live(ctx, agent="USENIOR1")
    elsewhere = _live(ctx, account="globex", user="u-carol")
    change = _opt_out(ctx)
    assert change.changed and {s.id for s in change.revoked} == {first.id, second.id}
    for session in (first, second):
        assert product_api.session_report(ctx, session.id).status is SessionStatus.REVOKED
    assert product_api.session_report(ctx, elsewhere.id).status is SessionStatus.LIVE
    revoked = _events(ctx, "session.revoked")
    assert {e.session_id for e in revoked} == {first.id, second.id}
    assert all(json.loads(e.details)["source"] == "account_opted_out" and e.actor_slack_id == "UREVOPS1" for e in revoked)
    (flagged,) = _events(ctx, "account.flag_changed")
    assert json.loads(flagged.details) == {"flag": "opted_out", "value": True, "note": "MSA §4.2: no vendor access"}
    assert flagged.seq < min(e.seq for e in revoked)  # one transaction: the flag, then what it ends
    owed = {(r.kind, r.subject_id) for r in outbox.rows(ctx) if r.state == "pending"}
    for session in (first, second):
        assert {("agent", session.request.id), ("notice", session.id), ("feed", session.request.id)} <= owed
        assert outbox.target_of(outbox.Kind.FEED, session.request.id, outbox.SECURITY) in change.targets


def test_other_flags_and_a_repeated_opt_out_end_nothing(ctx, directory):
    live = _live(ctx)
    sensitive = account_flags.change_flag(ctx.sessions, account_external_id="acme", flag=AccountFlag.SENSITIVE, on=True, actor=REVOPS, note="new DPA")
    assert sensitive.changed and sensitive.revoked == ()
    assert product_api.session_report(ctx, live.id).status is SessionStatus.LIVE
    assert _opt_out(ctx).revoked != ()
    again = _opt_out(ctx)
    assert (again.changed, again.revoked) == (False, ())


def test_sessions_already_over_are_left_as_they_ended(ctx, directory):
    live = _live(ctx)
    with freeze_time(utcnow() + timedelta(minutes=31)):  # past its 30 minutes: expired, not revoked
        assert _opt_out(ctx).revoked == ()
        assert product_api.session_report(ctx, live.id).status is SessionStatus.EXPIRED


def test_an_unknown_account_or_a_missing_note_changes_nothing(ctx, directory):
    with pytest.raises(DirectoryError):
        _opt_out(ctx, account="nope")
    with pytest.raises(DirectoryError):
        account_flags.change_flag(ctx.sessions, account_external_id="acme", flag=AccountFlag.OPTED_OUT, on=True, actor=REVOPS, note="  ")
    assert _events(ctx, "account.flag_changed") == []


def test_no_session_stays_live_on_an_account_that_opts_out_while_links_are_redeemed(ctx, directory):
    """Redemptions and the opt-out race: each link is either refused (the opt-out committed
    first) or redeemed and then revoked by it — never live afterwards."""
    # several open grants for the same customer user: the policy's one-open-access rule is off
    ctx.policy = ctx.policy.model_copy(update={"requests": ctx.policy.requests.model_copy(update={"one_open_access": False})})
    tokens = [_grant(ctx, agent=agent) for agent in ("UAGENT1", "USENIOR1", "UMANAGER1") * 3]
    barrier = threading.Barrier(len(tokens) + 1)
    outcomes: list[object] = []

    def redeem(token: str) -> None:
        barrier.wait()
        outcomes.append(links.redeem(ctx, token))

    def opt_out() -> None:
        barrier.wait()
        outcomes.append(_opt_out(ctx))

    threads = [threading.Thread(target=redeem, args=(t,)) for t in tokens] + [threading.Thread(target=opt_out)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with ctx.sessions() as db:
        session_ids = db.execute(select(ImpersonationSession.id)).scalars().all()
        assert verify_chain(db)[1] is None
    assert all(product_api.session_report(ctx, sid).status is SessionStatus.REVOKED for sid in session_ids)
    refused = [o for o in outcomes if isinstance(o, links.RedemptionRefused)]
    assert all(o.problem is links.LinkProblem.POLICY_CHANGED for o in refused)
    assert len(refused) + len(session_ids) == len(tokens)


# ---------------------------------------------------------------- from Slack (can_flag_accounts)


def _form(**changes):
    answers = {"account": "acme", "flag": "opted_out", "on": True, "reference": "MSA-2041", "reason": "Contract clause 4.2 forbids vendor access"}
    answers.update(changes)
    return account_flags.FlagForm(**answers)


def test_a_role_with_can_flag_accounts_sets_a_flag_from_slack_audited_as_the_cli_does(ctx, directory):
    live = _live(ctx)
    changed = account_flags.change_flag_from_slack(ctx, "USECURITY1", _form())
    assert isinstance(changed, account_flags.FlagChanged) and changed.change.changed
    assert [s.id for s in changed.change.revoked] == [live.id]  # the same path: an opt-out ends live sessions
    assert changed.targets and product_api.session_report(ctx, live.id).status is SessionStatus.REVOKED
    (event,) = _events(ctx, "account.flag_changed")
    assert event.actor_slack_id == "USECURITY1" and event.account == "acme"
    assert json.loads(event.details)["note"] == "MSA-2041: Contract clause 4.2 forbids vendor access"
    again = account_flags.change_flag_from_slack(ctx, "USECURITY1", _form())
    assert isinstance(again, account_flags.FlagChanged) and not again.change.changed
    cleared = account_flags.change_flag_from_slack(ctx, "USECURITY1", _form(on=False))
    assert isinstance(cleared, account_flags.FlagChanged) and cleared.change.changed
    assert len(_events(ctx, "account.flag_changed")) == 2


@pytest.mark.parametrize("agent", ["UAGENT1", "UMANAGER1", "UNOBODY1"])
def test_anyone_without_can_flag_accounts_is_refused_and_audited(ctx, directory, agent):
    refused = account_flags.change_flag_from_slack(ctx, agent, _form())
    assert refused == account_flags.FlagRefused(account_flags.NOT_PERMITTED, account_flags.FlagField.ACCOUNT)
    assert "`/impersonate help`" in refused.message  # names what they can do instead
    (event,) = _events(ctx, "account.flag_refused")
    assert event.actor_slack_id == agent and json.loads(event.details) == {"cause": "not_permitted"}
    assert _events(ctx, "account.flag_changed") == []
    assert account_flags.flag_form(ctx, agent, "acme") == account_flags.FlagRefused(account_flags.NOT_PERMITTED)
    assert len(_events(ctx, "account.flag_refused")) == 2


@pytest.mark.parametrize(
    ("changes", "field", "cause"),
    [
        ({"account": None}, account_flags.FlagField.ACCOUNT, "no_account"),
        ({"account": "nope"}, account_flags.FlagField.ACCOUNT, "unknown_account"),
        ({"flag": "vip"}, account_flags.FlagField.FLAG, "no_flag"),
        ({"on": None}, account_flags.FlagField.FLAG, "no_value"),
        ({"reference": ""}, account_flags.FlagField.REFERENCE, "reference_invalid"),
        ({"reference": "two words"}, account_flags.FlagField.REFERENCE, "reference_invalid"),
        ({"reason": "short"}, account_flags.FlagField.REASON, "reason_invalid"),
    ],
)
def test_a_flag_change_needs_an_account_a_flag_a_reference_and_a_reason(ctx, directory, changes, field, cause):
    refused = account_flags.change_flag_from_slack(ctx, "USECURITY1", _form(**changes))
    assert isinstance(refused, account_flags.FlagRefused) and refused.field is field
    assert _events(ctx, "account.flag_changed") == []
    (event,) = _events(ctx, "account.flag_refused")
    assert json.loads(event.details) == {"cause": cause}


def test_the_flag_form_shows_the_named_account_and_its_flags_now(ctx, directory):
    account_flags.change_flag_from_slack(ctx, "USECURITY1", _form(flag="sensitive"))
    form = account_flags.flag_form(ctx, "USECURITY1", " ACME ")
    assert form == account_flags.FlagFormView(("acme", form.account[1]), frozenset({"sensitive"}))
    assert account_flags.flag_form(ctx, "USECURITY1", "no-such") == account_flags.FlagFormView(None)
    assert account_flags.may_flag(ctx, "USECURITY1") and not account_flags.may_flag(ctx, "UAGENT1")


def test_the_security_channel_is_told_of_every_opt_out_even_with_nothing_live(ctx, directory):
    from bot.domain import anomalies

    _opt_out(ctx)  # nothing live on acme
    account_flags.change_flag(ctx.sessions, account_external_id="acme", flag=AccountFlag.OPTED_OUT, on=False, actor=REVOPS, note="amended")
    live = _live(ctx)
    change = _opt_out(ctx)  # again, now with a live session
    assert [s.id for s in change.revoked] == [live.id]
    alerts = [json.loads(e.details) for e in _events(ctx, "alert.raised")]
    told = [a for a in alerts if a["rule"] == anomalies.Rule.ACCOUNT_OPTED_OUT.value]
    assert [(a["subject"], a["by"], a["revoked"]) for a in told] == [("acme", "UREVOPS1", 0), ("acme", "UREVOPS1", 1)]
    assert told[0]["note"] == "MSA §4.2: no vendor access"
    owed = [r for r in outbox.rows(ctx, kinds=[outbox.Kind.ALERT])]
    assert len(owed) >= 2  # each told through the outbox
    # clearing it, or setting another flag, tells nobody
    account_flags.change_flag(ctx.sessions, account_external_id="globex", flag=AccountFlag.SENSITIVE, on=True, actor=REVOPS, note="MSA")
    assert len([a for a in (json.loads(e.details) for e in _events(ctx, "alert.raised")) if a["rule"] == "account_opted_out"]) == 2
