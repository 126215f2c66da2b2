"""bot/domain/requests.py: what the request modal offers an agent."""
from __future__ import annotations

import pytest

from bot.domain import requests


@pytest.mark.parametrize(
    ("max_minutes", "offered"),
    [
        (20, (15, 20)),  # the role's own maximum, not only the choices below it
        (60, (15, 30, 60)),  # the cap is one of the choices: offered once
        (45, (15, 30, 45)),
        (10, (10,)),  # below every choice: the cap alone
        (240, (15, 30, 60, 120, 240)),
    ],
)
def test_the_duration_choices_end_at_the_roles_own_maximum(ctx, max_minutes, offered):
    ctx.policy.roles["support"] = ctx.policy.roles["support"].model_copy(update={"max_minutes": max_minutes})
    options = requests.modal_options(ctx, "UAGENT1")
    assert options.duration_choices == offered
    assert options.default_duration == offered[0]


def test_no_role_no_durations(ctx):
    assert requests.modal_options(ctx, "UNOBODY1").duration_choices == ()
