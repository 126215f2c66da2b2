"""Who signed in with Slack before redeeming a link, and whether that is the requesting agent.

With `links.require_slack_sign_in` a link is redeemed only after its holder has signed in with
Slack (OpenID Connect, https://api.slack.com/authentication/sign-in-with-slack) and the
verified id_token names the agent who asked for it. The web face verifies the id_token
(bot/web/slack_sign_in.py); this module decides whether the ids it carries are the requester's.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.domain.identity import Identity, requester_identity


@dataclass(frozen=True)
class SignedInAgent:
    """The ids of a verified Sign in with Slack id_token: `https://slack.com/user_id` (= `sub`),
    `https://slack.com/team_id` and, on Enterprise Grid, `https://slack.com/enterprise_id`."""

    user_id: str
    team_id: str | None
    enterprise_id: str | None = None


def is_requester(
    signed_in: SignedInAgent,
    *,
    agent_slack_id: str,
    agent_enterprise_user_id: str | None,
    team_id: str | None,
) -> bool:
    """True when the signed-in Slack user is the agent of the request, by ids alone.

    The person: the same Slack id, or the same Enterprise Grid person (a `W…` id is the
    enterprise id of its `U…` twins, bot/domain/identity.py). E-mail addresses are not
    compared: an address can be re-used in another workspace, an id cannot. The workspace:
    when the request recorded where it was asked, the sign-in must be in that workspace (or
    its Grid organisation, the team of an org-wide install)."""
    requester = requester_identity(slack_id=agent_slack_id, email=None, enterprise_user_id=agent_enterprise_user_id)
    person = Identity(slack_id=signed_in.user_id, email=None, enterprise_user_id=None)
    if not requester.same_person(person):
        return False
    return team_id is None or team_id in (signed_in.team_id, signed_in.enterprise_id)
