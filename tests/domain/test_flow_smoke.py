from datetime import datetime, timedelta, timezone

from bot.domain import links, requests, sessions
from bot.domain.audit import verify_chain
from bot.domain.requests import AgentIdentity, RequestForm
from tests.fakes.directory_data import load_directory


def test_grant_redeem_end(ctx, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    form = RequestForm(account="acme", user="u-bob", reason="customer ticket about billing", ticket="SUP-1", duration_minutes=30, scope="read_only")
    result = requests.submit_request(ctx, AgentIdentity("UAGENT1"), form)
    assert isinstance(result, requests.Granted), result
    token = result.link.url.rsplit("/", 1)[1]
    red = links.redeem(ctx, token)
    assert isinstance(red, links.Redemption)
    again = links.redeem(ctx, token)
    assert again == links.RedemptionRefused(links.LinkProblem.ALREADY_USED)
    view = sessions.end_session(ctx, red.session.id, actor_slack_id="UAGENT1").session
    assert view.state == "ended"
    with session_factory() as db:
        count, problem = verify_chain(db)
    assert problem is None and count > 5
