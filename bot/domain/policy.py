"""The policy file (TOML) and the pure decision function.

The loader validates names and types with pydantic (unknown keys are errors) and reports the
key and its line. `decide()` is a pure, keyword-only function in the style of
django-hijack's permission checks: everything it needs is passed in, so it is tested with a
parametrized truth table (tests/domain/test_policy.py).
"""
from __future__ import annotations

import enum
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.domain.ports import GroupDirectory

SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GROUP_HANDLE = re.compile(r"^@[a-z0-9][a-z0-9._-]{0,79}$")
#: an account flag a policy can gate on
Flag = Literal["sensitive", "regulated", "flagged"]
GATEABLE_FLAGS: tuple[Flag, ...] = ("sensitive", "regulated", "flagged")
#: what can gate a request: a flag, "role" (requires_approval), "reinitiation"
Gate = Literal["sensitive", "regulated", "flagged", "role", "reinitiation"]
#: longest reason accepted (the modal's plain_text_input max_length says the same)
REASON_MAX_LENGTH = 1000
#: a ticket reference: an id like SUP-1234 or a URL; no spaces, bounded
TICKET_MAX_LENGTH = 200
TICKET_PATTERN = re.compile(r"^[!-~]{1,200}$")
#: DESIGN.md: the redeem window defaults to 5 minutes and is never more than 10.
MAX_REDEEM_WINDOW_MINUTES = 10
#: a product's name, as its API keys carry it: a lower-case slug, so it reads the same in
#: every listing and audit event
PRODUCT_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class PolicyError(Exception):
    """The policy file is invalid. The message names the key and, where known, its line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RoleConfig(_Strict):
    members: list[str] = Field(min_length=1)
    max_minutes: int = Field(gt=0, le=24 * 60)
    #: which accounts: only those assigned to the agent, or any
    scope: Literal["assigned", "any"] = "assigned"
    can_impersonate: bool = True
    can_read_write: bool = False
    can_approve: bool = False
    can_view_log: bool = False
    can_flag_accounts: bool = False
    can_revoke: bool = False
    can_request_extension: bool = False
    #: extend a live session without an approval, up to the role's own max_minutes
    can_self_extend: bool = False
    can_break_glass: bool = False
    requires_approval: bool = False
    #: may erase a customer user's personal data (`privacy erase`, docs/privacy.md)
    can_erase_personal_data: bool = False

    @field_validator("members")
    @classmethod
    def _members_are_ids_or_groups(cls, members: list[str]) -> list[str]:
        for member in members:
            if not (SLACK_USER_ID.match(member) or GROUP_HANDLE.match(member)):
                raise ValueError(
                    f"{member!r} is neither a Slack user id (U…/W…) nor a user group handle (@name)"
                )
        return members


class LinksConfig(_Strict):
    redeem_window_minutes: int = Field(default=5, ge=1, le=MAX_REDEEM_WINDOW_MINUTES)
    #: redeeming needs the requesting agent to sign in with Slack (OpenID Connect) first, so a
    #: leaked link is useless to anyone else; needs SLACK_CLIENT_ID / SLACK_CLIENT_SECRET
    require_slack_sign_in: bool = False


class RequestsConfig(_Strict):
    reason_min_length: int = Field(default=20, ge=1, le=500)
    ticket_required: bool = True
    duration_choices: list[int] = Field(default_factory=lambda: [15, 30, 60, 120, 240], min_length=1)
    #: one open access (pending, granted or live) per agent, account and customer user: a new
    #: request while one is open points to it instead of issuing another
    one_open_access: bool = True

    @field_validator("duration_choices")
    @classmethod
    def _positive_sorted(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError("durations must be positive minutes")
        return sorted(set(values))


class GatingConfig(_Strict):
    flags: list[Flag] = Field(default_factory=lambda: list(GATEABLE_FLAGS))
    approvals_required: int = Field(default=1, ge=1, le=5)
    #: per flag overrides, e.g. {regulated = 2}
    approvals_required_by_flag: dict[Flag, int] = Field(
        default_factory=dict
    )
    pending_ttl_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    #: designated approvers (Slack ids or @groups) per account id; they narrow, never widen,
    #: the set of `can_approve` holders
    approvers_by_account: dict[str, list[str]] = Field(default_factory=dict)
    #: designated approvers per Slack team (workspace) id
    approvers_by_team: dict[str, list[str]] = Field(default_factory=dict)
    #: approvers who have not answered get a reminder (a new DM, which notifies) once this
    #: percentage of the pending TTL has passed; 0 sends none
    remind_after_percent: int = Field(default=50, ge=0, le=99)
    #: a second approver group (ids / @groups, narrowed to can_approve holders) asked when
    #: the first has not decided in time; empty: no escalation
    escalate_to: list[str] = Field(default_factory=list)
    #: per gate (a flag, "role" for requires_approval, "reinitiation" for a re-initiation
    #: past reinitiation.require_approval_from): the escalation group for requests gated by
    #: it, instead of escalate_to (several gates: their groups together)
    escalate_to_by_gate: dict[Gate, list[str]] = Field(default_factory=dict)
    #: when the escalation group is asked: once this percentage of the pending TTL has passed …
    escalate_after_percent: int = Field(default=75, ge=1, le=99)
    #: … or, when set, this many minutes after the ask (never, if the TTL is shorter)
    escalate_after_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)

    @field_validator("approvers_by_account", "approvers_by_team", "escalate_to_by_gate")
    @classmethod
    def _approver_members(cls, mapping: dict[str, list[str]]) -> dict[str, list[str]]:
        for members in mapping.values():
            _check_members(members)
        return mapping

    @field_validator("escalate_to")
    @classmethod
    def _escalation_members(cls, members: list[str]) -> list[str]:
        return _check_members(members)


def _check_members(members: list[str]) -> list[str]:
    for member in members:
        if not (SLACK_USER_ID.match(member) or GROUP_HANDLE.match(member)):
            raise ValueError(f"{member!r} is neither a Slack user id nor a @group handle")
    return members


class BreakGlassConfig(_Strict):
    #: a break-glass reason must be longer than an ordinary one
    reason_min_length: int = Field(default=60, ge=1, le=1000)


def _product_name(value: str) -> str:
    if not PRODUCT_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a product name (1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "as `api-keys create --product` takes it)"
        )
    return value


ProductName = Annotated[str, AfterValidator(_product_name)]


class ReinitiationConfig(_Strict):
    """A request by an agent for the customer user of their last session with that user, made
    soon after that session ended, is a re-initiation: a new request, with its own reason,
    linked to that session and counted (docs/policy.md "Re-initiation")."""

    #: how long after a session ended a new request for the same customer user is linked to it
    window_minutes: int = Field(default=30, ge=1, le=24 * 60)
    #: from this re-initiation in a row on, the request needs approval even on an ungated
    #: account; None: re-initiations need no approval of their own
    require_approval_from: int | None = Field(default=None, ge=1, le=100)


class ProductConfig(_Strict):
    """Which product a session is launched into (docs/product-api.md "Sessions belong to a
    product"): stored on the session at redemption; only that product's API keys may read it
    or report actions in it."""

    #: the product behind PRODUCT_LAUNCH_URL, named as its API keys name it
    name: ProductName | None = None
    #: accounts that live in another product: account id → product
    by_account: dict[str, ProductName] = Field(default_factory=dict)

    def for_account(self, account: str) -> str | None:
        return self.by_account.get(account, self.name)


class ExtensionsConfig(_Strict):
    choices_minutes: list[int] = Field(default_factory=lambda: [15, 30, 60], min_length=1)
    #: the absolute ceiling of a session with every extension, from its start (never below a
    #: role's own max_minutes): past the role's cap only with an approval, and never past this
    max_total_minutes: int = Field(default=240, gt=0, le=24 * 60)
    #: who approves an extension past the role's cap (user ids / @groups, narrowed to holders
    #: of can_approve); empty: every approver the request itself would have
    past_cap_approvers: list[str] = Field(default_factory=list)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
WEEKLY_SLOT = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun) ([01][0-9]|2[0-3]):[0-5][0-9]$")


def clock_minutes(value: str) -> int:
    """"HH:MM" (already validated) as minutes after midnight."""
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


class BusinessHoursConfig(_Strict):
    """Working hours, read on each agent's own clock (their Slack time zone)."""

    start: str = "08:00"
    end: str = "19:00"
    days: list[Weekday] = Field(default_factory=lambda: list(WORKDAYS))

    @field_validator("start")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not CLOCK_TIME.match(value):
            raise ValueError('must be a 24-hour time "HH:MM"')
        return value

    @field_validator("end")
    @classmethod
    def _end_time(cls, value: str) -> str:
        # "24:00" (ISO 8601's end of day) lets working hours run to midnight
        if not (CLOCK_TIME.match(value) or value == "24:00"):
            raise ValueError('must be a 24-hour time "HH:MM" (or "24:00")')
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> BusinessHoursConfig:
        if clock_minutes(self.start) >= clock_minutes(self.end):
            raise ValueError("business_hours.start must be before business_hours.end")
        return self


#: the flags whose every session alerts unless the policy names others
ALERTED_FLAGS: tuple[Flag, ...] = ("sensitive", "regulated")


class AlertsConfig(_Strict):
    security_channel: str | None = None
    #: alert when one account sees more sessions than this in 24 hours
    max_sessions_per_account_24h: int = Field(default=5, ge=1)
    #: alert when one agent opens sessions on more distinct accounts than this in 24 hours
    max_accounts_per_agent_24h: int = Field(default=10, ge=1)
    #: alert when an agent is refused (blocked or denied) this many times in 24 hours
    denials_per_agent_24h: int = Field(default=3, ge=1)
    #: alert on every session on an account carrying one of these flags
    session_flags: list[Flag] = Field(default_factory=lambda: list(ALERTED_FLAGS))
    #: alert when one agent holds at least this share of an account's sessions …
    concentration_percent: int = Field(default=80, ge=1, le=100)
    #: … over this many days …
    concentration_days: int = Field(default=30, ge=1, le=366)
    #: … once the account has at least this many sessions in that time (1 of 1 is not a pattern)
    concentration_min_sessions: int = Field(default=5, ge=1)
    business_hours: BusinessHoursConfig = Field(default_factory=BusinessHoursConfig)
    #: how often the scheduler sweeps for anomalies (they are also checked at each request)
    sweep_minutes: int = Field(default=5, ge=1, le=24 * 60)

    @field_validator("security_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[CG][A-Z0-9]{2,}$", value):
            raise ValueError("must be a Slack channel id such as C0123ABCD")
        return value


class NotificationsConfig(_Strict):
    #: the agent is warned this many minutes before their session ends (once per end time)
    expiry_warning_minutes: int = Field(default=5, ge=1, le=120)


class DigestsConfig(_Strict):
    #: weekly access review: day and time (UTC), covering the seven days before it
    weekly: str = "mon 09:00"
    #: quarterly access review of the quarter just ended
    quarterly: bool = True
    #: time (UTC) on the first day of each quarter when the quarterly review is posted
    quarterly_time: str = "09:00"

    @field_validator("weekly")
    @classmethod
    def _weekly_slot(cls, value: str) -> str:
        if not WEEKLY_SLOT.match(value):
            raise ValueError('must be a day and a 24-hour time, e.g. "mon 09:00"')
        return value

    @field_validator("quarterly_time")
    @classmethod
    def _quarterly_time(cls, value: str) -> str:
        if not CLOCK_TIME.match(value):
            raise ValueError('must be a 24-hour time "HH:MM"')
        return value


#: a justification code as the policy names it and the request stores it
JUSTIFICATION_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
#: a justification's label is a select option's text in the modal (Slack: at most 75 characters)
JUSTIFICATION_LABEL_MAX_LENGTH = 75
#: a select offers at most 100 options (Slack, "Select menu element")
JUSTIFICATIONS_MAX = 100


class PrivacyConfig(_Strict):
    """Personal data (docs/privacy.md): how long a customer user's personal values are kept,
    and the lawful-basis / justification codes an agent chooses from beside the reason."""

    #: days after which the scheduler erases the personal values of requests and audit events
    #: (a customer user's id and the reasons about them); 0 keeps them until erased
    personal_data_retention_days: int = Field(default=0, ge=0, le=36500)
    #: code → label shown in the /impersonate modal; empty: no justification is asked
    justifications: dict[str, str] = Field(default_factory=dict, max_length=JUSTIFICATIONS_MAX)

    @field_validator("justifications")
    @classmethod
    def _codes_and_labels(cls, mapping: dict[str, str]) -> dict[str, str]:
        for code, label in mapping.items():
            if not JUSTIFICATION_CODE.match(code):
                raise ValueError(f"justification code {code!r} must be lower-case letters, digits and _ (at most 64)")
            if not label.strip() or len(label) > JUSTIFICATION_LABEL_MAX_LENGTH:
                raise ValueError(f"the label of {code!r} must be 1–{JUSTIFICATION_LABEL_MAX_LENGTH} characters")
        return mapping


ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def _role_name(name: str) -> str:
    if not ROLE_NAME.match(name):
        raise ValueError(f"role name {name!r} must be lower-case letters, digits, - or _")
    return name


#: Validated as a dict key (not by a validator on the whole dict) so the error's location
#: carries the role name and the loader can point at its `[roles.<name>]` line.
RoleName = Annotated[str, AfterValidator(_role_name)]


class PolicyConfig(_Strict):
    roles: dict[RoleName, RoleConfig] = Field(min_length=1)
    links: LinksConfig = Field(default_factory=LinksConfig)
    requests: RequestsConfig = Field(default_factory=RequestsConfig)
    gating: GatingConfig = Field(default_factory=GatingConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    digests: DigestsConfig = Field(default_factory=DigestsConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    break_glass: BreakGlassConfig = Field(default_factory=BreakGlassConfig)
    extensions: ExtensionsConfig = Field(default_factory=ExtensionsConfig)
    reinitiation: ReinitiationConfig = Field(default_factory=ReinitiationConfig)
    product: ProductConfig = Field(default_factory=ProductConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @model_validator(mode="after")
    def _someone_can_approve_when_gating(self) -> PolicyConfig:
        if self.gating.flags and not any(r.can_approve for r in self.roles.values()):
            raise ValueError("gating.flags is set but no role has can_approve = true")
        return self


def load_policy(path: Path) -> PolicyConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"policy file {path} not found; copy policy.example.toml to {path} "
            "or set IMPERSONATION_POLICY"
        ) from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str = "policy") -> PolicyConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # message carries line and column
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # pydantic marks a bad dict key with a trailing "[key]"; the key path is what people read.
        loc = [str(part) for part in first["loc"] if part != "[key]"]
        key = ".".join(loc) or "(top level)"
        line = _line_of(text, loc)
        where = f" (line {line})" if line else ""
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required key is missing"
        raise PolicyError(f"{source}: {key}{where}: {message}") from None


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best-effort line of a key path in TOML text: the deepest key or table header found,
    searching in order so `roles.support.max_minutes` finds max_minutes after [roles.support]."""
    lines = text.splitlines()
    start = 0
    found: int | None = None
    for depth in range(len(loc), 0, -1):
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in loc[:depth]) + r"\s*\]")
        for number, line in enumerate(lines):
            if header.match(line):
                start, found = number, number + 1
                break
        if found:
            break
    for part in reversed(loc):
        key_re = re.compile(r"^\s*" + re.escape(part) + r"\s*=")
        for number in range(start, len(lines)):
            if key_re.match(lines[number]):
                return number + 1
        if part.isdigit():
            continue
    return found


@dataclass(frozen=True)
class Powers:
    """The effective powers of one Slack user: the union of every role they hold.
    Restrictions win over permissions: `requires_approval` applies if any role has it."""

    role: str
    max_minutes: int
    scope: str
    can_impersonate: bool
    can_read_write: bool
    can_approve: bool
    can_view_log: bool
    can_flag_accounts: bool
    can_revoke: bool
    can_request_extension: bool
    can_break_glass: bool
    requires_approval: bool
    #: extend within max_minutes without an approval (extensions past it always need one)
    can_self_extend: bool = False
    can_erase_personal_data: bool = False


def powers_of(policy: PolicyConfig, user_id: str, groups: GroupDirectory) -> Powers | None:
    held = [
        (name, role)
        for name, role in sorted(policy.roles.items())
        if user_id in role.members
        or any(m.startswith("@") and user_id in groups.members_of(m[1:]) for m in role.members)
    ]
    if not held:
        return None
    roles = [role for _, role in held]
    impersonating = [r for r in roles if r.can_impersonate] or roles
    return Powers(
        role="+".join(name for name, _ in held),
        max_minutes=max(r.max_minutes for r in impersonating),
        scope="any" if any(r.scope == "any" for r in impersonating) else "assigned",
        can_impersonate=any(r.can_impersonate for r in roles),
        can_read_write=any(r.can_read_write for r in roles),
        can_approve=any(r.can_approve for r in roles),
        can_view_log=any(r.can_view_log for r in roles),
        can_flag_accounts=any(r.can_flag_accounts for r in roles),
        can_revoke=any(r.can_revoke for r in roles),
        can_request_extension=any(r.can_request_extension for r in roles),
        can_self_extend=any(r.can_self_extend for r in roles),
        can_break_glass=any(r.can_break_glass for r in roles),
        requires_approval=any(r.requires_approval for r in roles),
        can_erase_personal_data=any(r.can_erase_personal_data for r in roles),
    )


class Outcome(str, enum.Enum):
    GRANT = "grant"
    NEEDS_APPROVAL = "needs_approval"
    BLOCK = "block"


class BlockCause(str, enum.Enum):
    UNKNOWN_ACCOUNT = "unknown_account"
    OPTED_OUT = "opted_out"
    NO_ROLE = "no_role"
    NOT_ASSIGNED = "not_assigned"
    UNKNOWN_USER = "unknown_user"
    PROTECTED_USER = "protected_user"
    REASON_TOO_SHORT = "reason_too_short"
    REASON_TOO_LONG = "reason_too_long"
    TICKET_REQUIRED = "ticket_required"
    TICKET_INVALID = "ticket_invalid"
    DURATION_OVER_CAP = "duration_over_cap"
    SCOPE_NOT_ALLOWED = "scope_not_allowed"
    BREAK_GLASS_NOT_ALLOWED = "break_glass_not_allowed"
    BREAK_GLASS_REASON_TOO_SHORT = "break_glass_reason_too_short"
    IDENTITY_UNAVAILABLE = "identity_unavailable"
    JUSTIFICATION_REQUIRED = "justification_required"


class Field_(str, enum.Enum):
    """Which part of the request a refusal is about (the modal shows it on that field)."""

    ACCOUNT = "account"
    USER = "user"
    REASON = "reason"
    TICKET = "ticket"
    DURATION = "duration"
    SCOPE = "scope"
    BREAK_GLASS = "break_glass"
    JUSTIFICATION = "justification"


BLOCK_FIELD: dict[BlockCause, Field_] = {
    BlockCause.UNKNOWN_ACCOUNT: Field_.ACCOUNT,
    BlockCause.OPTED_OUT: Field_.ACCOUNT,
    BlockCause.NO_ROLE: Field_.ACCOUNT,
    BlockCause.NOT_ASSIGNED: Field_.ACCOUNT,
    BlockCause.UNKNOWN_USER: Field_.USER,
    BlockCause.PROTECTED_USER: Field_.USER,
    BlockCause.REASON_TOO_SHORT: Field_.REASON,
    BlockCause.REASON_TOO_LONG: Field_.REASON,
    BlockCause.TICKET_REQUIRED: Field_.TICKET,
    BlockCause.TICKET_INVALID: Field_.TICKET,
    BlockCause.DURATION_OVER_CAP: Field_.DURATION,
    BlockCause.SCOPE_NOT_ALLOWED: Field_.SCOPE,
    BlockCause.BREAK_GLASS_NOT_ALLOWED: Field_.BREAK_GLASS,
    BlockCause.BREAK_GLASS_REASON_TOO_SHORT: Field_.REASON,
    BlockCause.IDENTITY_UNAVAILABLE: Field_.ACCOUNT,
    BlockCause.JUSTIFICATION_REQUIRED: Field_.JUSTIFICATION,
}


#: the gate a re-initiation past `reinitiation.require_approval_from` adds to `gated_by`
REINITIATION_GATE = "reinitiation"


def reinitiation_needs_approval(*, ordinal: int, require_approval_from: int | None) -> bool:
    """Whether a request needs approval because of how many times in a row the agent came
    back to the same customer user. `ordinal` is 0 for a request that is no re-initiation,
    N for the Nth in a row; from `require_approval_from` on (None: never) it needs approval."""
    return require_approval_from is not None and ordinal >= 1 and ordinal >= require_approval_from


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    cause: BlockCause | None = None
    gated_by: frozenset[str] = frozenset()
    approvals_required: int = 0
    #: granted by break-glass although these gates applied (audited as approval.bypassed)
    bypassed: frozenset[str] = frozenset()

    @property
    def field(self) -> Field_ | None:
        return BLOCK_FIELD[self.cause] if self.cause else None


def decide(
    *,
    powers: Powers | None,
    account_flags: frozenset[str] | None,
    assigned: bool,
    user_known: bool,
    user_protected: bool,
    reason: str,
    ticket: str | None,
    duration_minutes: int,
    scope: str,
    reason_min_length: int,
    ticket_required: bool,
    gated_flags: frozenset[str],
    approvals_required: int = 1,
    approvals_required_by_flag: Mapping[str, int] | None = None,
    break_glass: bool = False,
    break_glass_reason_min_length: int = 60,
    requester_identified: bool = True,
    reinitiation_ordinal: int = 0,
    reinitiation_approval_from: int | None = None,
    justification: str | None = None,
    justification_codes: frozenset[str] = frozenset(),
) -> Decision:
    """Decide one request. Pure: no I/O, no clock. `account_flags` is None for an unknown
    account. The order matters: an opted-out account refuses everyone (the
    customer's contract is absolute: no role overrides it), before any question about the agent."""

    def block(cause: BlockCause) -> Decision:
        return Decision(Outcome.BLOCK, cause)

    if account_flags is None:
        return block(BlockCause.UNKNOWN_ACCOUNT)
    if "opted_out" in account_flags:
        return block(BlockCause.OPTED_OUT)
    if powers is None or not powers.can_impersonate:
        return block(BlockCause.NO_ROLE)
    if powers.scope == "assigned" and not assigned:
        return block(BlockCause.NOT_ASSIGNED)
    if not user_known:
        return block(BlockCause.UNKNOWN_USER)
    if user_protected:
        return block(BlockCause.PROTECTED_USER)
    if len(reason.strip()) < reason_min_length:
        return block(BlockCause.REASON_TOO_SHORT)
    if len(reason) > REASON_MAX_LENGTH:
        return block(BlockCause.REASON_TOO_LONG)
    if justification_codes and justification not in justification_codes:
        # one of the configured codes, none other (a forged submission's value is refused)
        return block(BlockCause.JUSTIFICATION_REQUIRED)
    if ticket and ticket.strip() and not TICKET_PATTERN.match(ticket.strip()):
        return block(BlockCause.TICKET_INVALID)
    if ticket_required and not (ticket and ticket.strip()):
        return block(BlockCause.TICKET_REQUIRED)
    if duration_minutes <= 0 or duration_minutes > powers.max_minutes:
        return block(BlockCause.DURATION_OVER_CAP)
    if scope not in ("read_only", "read_write") or (scope == "read_write" and not powers.can_read_write):
        return block(BlockCause.SCOPE_NOT_ALLOWED)
    gated_by = frozenset(account_flags & gated_flags)
    if powers.requires_approval:
        gated_by |= {"role"}
    if reinitiation_needs_approval(ordinal=reinitiation_ordinal, require_approval_from=reinitiation_approval_from):
        gated_by |= {REINITIATION_GATE}
    if break_glass and gated_by:
        # Only a break-glass role, only with a longer reason, never on an
        # opted-out account (refused above, before any role is considered).
        if not powers.can_break_glass:
            return block(BlockCause.BREAK_GLASS_NOT_ALLOWED)
        if len(reason.strip()) < break_glass_reason_min_length:
            return block(BlockCause.BREAK_GLASS_REASON_TOO_SHORT)
        return Decision(Outcome.GRANT, bypassed=gated_by)
    if gated_by:
        # Approvers are checked against the requester's other ids (Grid id, e-mail); without
        # them a twin id of the requester could approve, so an approval cannot be asked.
        if not requester_identified:
            return block(BlockCause.IDENTITY_UNAVAILABLE)
        by_flag = approvals_required_by_flag or {}
        needed = max([approvals_required, *(by_flag.get(f, 0) for f in gated_by)])
        return Decision(Outcome.NEEDS_APPROVAL, gated_by=gated_by, approvals_required=needed)
    return Decision(Outcome.GRANT)


def may_erase_personal_data(*, powers: Powers | None) -> bool:
    """Whether someone may erase a customer user's personal data (docs/privacy.md)."""
    return powers is not None and powers.can_erase_personal_data


class RedeemRefusal(str, enum.Enum):
    """Why a granted link can no longer be redeemed: something the grant relied on changed."""

    OPTED_OUT = "opted_out"
    NO_ROLE = "no_role"
    NOT_ASSIGNED = "not_assigned"
    SCOPE_NOT_ALLOWED = "scope_not_allowed"
    DURATION_OVER_CAP = "duration_over_cap"
    NEWLY_GATED = "newly_gated"


def recheck_at_redemption(
    *,
    powers: Powers | None,
    account_flags: frozenset[str],
    assigned: bool,
    scope: str,
    duration_minutes: int,
    granted_gates: frozenset[str],
    gated_flags: frozenset[str],
) -> RedeemRefusal | None:
    """Whether a grant still holds when its link is redeemed. Pure, like `decide`, and asked
    the same questions with what may have changed since the grant: the account's flags (an
    opt-out, or a gate the grant was neither approved for nor broke glass through), and the
    agent's powers (role, account scope, read-write, the duration cap). None: it holds."""
    if "opted_out" in account_flags:
        return RedeemRefusal.OPTED_OUT
    if powers is None or not powers.can_impersonate:
        return RedeemRefusal.NO_ROLE
    if powers.scope == "assigned" and not assigned:
        return RedeemRefusal.NOT_ASSIGNED
    if scope == "read_write" and not powers.can_read_write:
        return RedeemRefusal.SCOPE_NOT_ALLOWED
    if duration_minutes > powers.max_minutes:
        return RedeemRefusal.DURATION_OVER_CAP
    if (account_flags & gated_flags) - granted_gates:
        return RedeemRefusal.NEWLY_GATED
    return None


class ExtensionOutcome(str, enum.Enum):
    SELF_SERVE = "self_serve"
    NEEDS_APPROVAL = "needs_approval"
    REFUSE = "refuse"


class ExtensionRefusal(str, enum.Enum):
    NO_POWER = "no_power"
    REASON_TOO_SHORT = "reason_too_short"
    INVALID_MINUTES = "invalid_minutes"
    AT_CEILING = "at_ceiling"


@dataclass(frozen=True)
class ExtensionDecision:
    outcome: ExtensionOutcome
    cause: ExtensionRefusal | None = None
    #: the session's whole length from its start if this ask is granted (trimmed to the ceiling)
    new_total_minutes: int = 0
    #: the new length passes the role's own max_minutes (an approval, by past-cap approvers)
    past_cap: bool = False


def decide_extension_ask(
    *,
    powers: Powers | None,
    current_total_minutes: int,
    asked_minutes: int,
    reason_ok: bool,
    ceiling_minutes: int,
) -> ExtensionDecision:
    """Decide an ask for more time. Pure, like `decide`. Within the role's cap an extension is
    self-served where the role allows (`can_self_extend`), else approved like a request; past
    the cap it always needs an approval; nothing passes the ceiling (`extensions.
    max_total_minutes`, never below the role's cap): an ask beyond it is trimmed to it, and a
    session already there cannot be extended."""
    if powers is None or not powers.can_request_extension:
        return ExtensionDecision(ExtensionOutcome.REFUSE, ExtensionRefusal.NO_POWER)
    if not reason_ok:
        return ExtensionDecision(ExtensionOutcome.REFUSE, ExtensionRefusal.REASON_TOO_SHORT)
    if asked_minutes <= 0:
        return ExtensionDecision(ExtensionOutcome.REFUSE, ExtensionRefusal.INVALID_MINUTES)
    ceiling = max(ceiling_minutes, powers.max_minutes)
    if current_total_minutes >= ceiling:
        return ExtensionDecision(ExtensionOutcome.REFUSE, ExtensionRefusal.AT_CEILING)
    new_total = min(current_total_minutes + asked_minutes, ceiling)
    past_cap = new_total > powers.max_minutes
    if powers.can_self_extend and not past_cap:
        return ExtensionDecision(ExtensionOutcome.SELF_SERVE, new_total_minutes=new_total)
    return ExtensionDecision(ExtensionOutcome.NEEDS_APPROVAL, new_total_minutes=new_total, past_cap=past_cap)


# ---------------------------------------------------------------- reminders and escalation


@dataclass(frozen=True)
class ApprovalNudges:
    """What an unanswered ask owes at one moment: whom to remind, whether the escalation
    group is asked now, and whom of it."""

    remind: tuple[str, ...] = ()
    escalate: bool = False
    ask: tuple[str, ...] = ()


def escalation_group(
    *, gates: frozenset[str], escalate_to: Sequence[str], escalate_to_by_gate: Mapping[Gate, Sequence[str]]
) -> tuple[str, ...]:
    """The members (ids, @groups) of the group an unanswered ask escalates to: the groups
    named for its gates (in the gates' order), together, or else `escalate_to`. Pure."""
    by_gate = [member for gate, members in sorted(escalate_to_by_gate.items()) if gate in gates for member in members]
    return tuple(dict.fromkeys(by_gate or escalate_to))


def approval_nudges(
    *,
    now: datetime,
    asked_at: datetime,
    expires_at: datetime,
    asked: Sequence[str],
    answered: frozenset[str],
    escalation_named: bool,
    escalation: Sequence[str],
    reminded: bool,
    escalated: bool,
    remind_after_percent: int,
    escalate_after_percent: int,
    escalate_after_minutes: int | None,
) -> ApprovalNudges:
    """Whom an ask still pending at `now` owes a word: once `remind_after_percent` of its TTL
    has passed, a reminder to everyone asked who has not answered (once); once the
    escalation point has passed (`escalate_after_minutes` after the ask when set, else
    `escalate_after_percent` of the TTL), the escalation group's approvers not yet asked
    (once, and only if the policy names a group: `escalation_named`; escalating to a group
    none of whom may approve is still recorded). Nothing at or past the expiry: the ask is
    expired instead. `escalation`: the group's eligible approvers. Pure."""
    if now >= expires_at:
        return ApprovalNudges()
    ttl = expires_at - asked_at
    remind: tuple[str, ...] = ()
    if not reminded and remind_after_percent > 0 and now >= asked_at + ttl * remind_after_percent / 100:
        remind = tuple(a for a in asked if a not in answered)
    escalate_at = asked_at + (timedelta(minutes=escalate_after_minutes) if escalate_after_minutes else ttl * escalate_after_percent / 100)
    if escalated or not escalation_named or now < escalate_at:
        return ApprovalNudges(remind=remind)
    return ApprovalNudges(remind=remind, escalate=True, ask=tuple(a for a in escalation if a not in asked))
