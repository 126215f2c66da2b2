"""Who a Slack user really is, across Enterprise Grid ids and e-mail addresses.

On Enterprise Grid one person can appear as a workspace id (`U…`) and an org-wide id (`W…`);
`users.info` gives both the e-mail and `enterprise_user.id` for either. Self-approval checks
and "counts once" rules compare these, not raw Slack ids.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.domain.ports import PeopleDirectory


@dataclass(frozen=True)
class Identity:
    slack_id: str
    email: str | None
    enterprise_user_id: str | None
    #: False when the directory could not tell who this is: such an identity never counts as
    #: "someone else" (self-approval checks fail closed on it).
    resolved: bool = True

    @property
    def key(self) -> str:
        """One stable key per person, used for the approvals uniqueness constraint."""
        if self.enterprise_user_id:
            return f"grid:{self.enterprise_user_id}"
        if self.email:
            return f"email:{self.email}"
        return f"slack:{self.slack_id}"

    def same_person(self, other: Identity) -> bool:
        if self.slack_id == other.slack_id:
            return True
        if self.enterprise_user_id and self.enterprise_user_id == other.enterprise_user_id:
            return True
        if self.email and self.email == other.email:
            return True
        # A Grid `W…` id is itself the enterprise id of its `U…` twins.
        return other.slack_id == self.enterprise_user_id or self.slack_id == other.enterprise_user_id


def requester_identity(*, slack_id: str, email: str | None, enterprise_user_id: str | None) -> Identity:
    """A requester as stored on their request at submission."""
    return Identity(slack_id=slack_id, email=(email or "").strip().lower() or None, enterprise_user_id=enterprise_user_id)


def identify(people: PeopleDirectory, slack_id: str, *, known_email: str | None = None) -> Identity:
    person = people.person(slack_id)
    email = (person.email or known_email or "").strip().lower() or None
    return Identity(slack_id=slack_id, email=email, enterprise_user_id=person.enterprise_user_id, resolved=person.resolved)
