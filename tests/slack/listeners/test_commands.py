"""`/impersonate [account]`, driven through the Bolt app with signed requests."""
import pytest

from bot.slack.ids import ActionId, BlockId, CallbackId
from tests.fakes.directory_data import load_directory
from tests.slack.block_rules import problems
from tests.slack.listeners.flow import with_break_glass
from tests.slack.signed import slash_command


def account_element(view):
    return next(b for b in view["blocks"] if b.get("block_id") == BlockId.ACCOUNT.value)["element"]


def test_command_acks_and_opens_the_modal_with_the_trigger_id(send, slack_client):
    response = send(slash_command("", trigger_id="1337.42.trigger-secret"))
    assert response.status == 200
    assert response.body == ""  # a bare ack: nothing is posted in the channel
    (opened,) = slack_client.calls_to("views.open")
    assert opened["trigger_id"] == "1337.42.trigger-secret"
    view = opened["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_REQUEST.value
    assert problems(view, surface="modal") == []
    assert "initial_option" not in account_element(view)
    # durations offered are capped by the support role's 60 minutes
    duration = next(b for b in view["blocks"] if b.get("block_id") == BlockId.DURATION.value)["element"]
    assert [o["value"] for o in duration["options"]] == ["15", "30", "60"]


def test_command_text_naming_an_account_prefills_it(send, slack_client, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    send(slash_command("  ACME "))
    option = account_element(slack_client.calls_to("views.open")[0]["view"])["initial_option"]
    assert option == {"text": {"type": "plain_text", "text": "ACME Corp (acme)", "emoji": True}, "value": "acme"}
    assert account_element(slack_client.calls_to("views.open")[0]["view"])["action_id"] == ActionId.ACCOUNT_SELECT.value


def test_command_text_that_names_no_account_prefills_nothing(send, slack_client, session_factory, tmp_path):
    load_directory(session_factory, tmp_path)
    send(slash_command("acm"))  # a prefix is not a name
    send(slash_command("<!channel>"))
    for opened in slack_client.calls_to("views.open"):
        assert "initial_option" not in account_element(opened["view"])


@pytest.mark.parametrize("user_id", ["UNOBODY1", "USECURITY1"])  # no role; a role that cannot impersonate
def test_someone_without_an_impersonation_role_gets_the_informational_view(send, slack_client, session_factory, tmp_path, user_id):
    load_directory(session_factory, tmp_path)
    send(slash_command("acme", user_id=user_id))
    view = slack_client.calls_to("views.open")[0]["view"]
    assert view["callback_id"] == CallbackId.IMPERSONATE_UNAVAILABLE.value
    assert "submit" not in view


def test_read_write_is_offered_only_where_the_role_allows(send, slack_client):
    send(slash_command("", user_id="UAGENT1"))
    send(slash_command("", user_id="USENIOR1"))
    support, senior = (call["view"] for call in slack_client.calls_to("views.open"))

    def scopes(view):
        block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.SCOPE.value)
        return [o["value"] for o in block["element"]["options"]]

    assert scopes(support) == ["read_only"]
    assert scopes(senior) == ["read_only", "read_write"]


def test_break_glass_is_offered_only_to_break_glass_roles(send, slack_client, ctx):
    with_break_glass(ctx)  # senior may break glass; support may not
    send(slash_command("", user_id="UAGENT1"))
    send(slash_command("", user_id="USENIOR1"))
    support, senior = (call["view"] for call in slack_client.calls_to("views.open"))
    assert BlockId.BREAK_GLASS.value not in {b.get("block_id") for b in support["blocks"]}
    (box,) = [b for b in senior["blocks"] if b.get("block_id") == BlockId.BREAK_GLASS.value]
    assert box["element"]["action_id"] == ActionId.BREAK_GLASS_CHOICE.value
    assert f"at least {ctx.policy.break_glass.reason_min_length} characters" in box["hint"]["text"]
    assert problems(senior, surface="modal") == []


# ---------------------------------------------------------------- help and unknown sub-commands


def ephemeral_answer(response):
    import json

    body = json.loads(response.body)
    assert body["response_type"] == "ephemeral"
    return body


@pytest.mark.parametrize(
    ("user_id", "shown", "hidden"),
    [
        # support: may impersonate, nothing else
        ("UAGENT1", ["/impersonate [account]"], ["revoke", "flag", "/impersonation-log", "Approve or deny"]),
        # manager: impersonates and approves
        ("UMANAGER1", ["/impersonate [account]", "Approve or deny"], ["revoke", "flag", "/impersonation-log"]),
        # security: no impersonation; revokes, flags, reads the log
        ("USECURITY1", ["revoke", "flag", "/impersonation-log"], ["/impersonate [account]", "Approve or deny"]),
        # nobody: no role at all
        ("UNOBODY1", ["no role in the impersonation policy"], ["/impersonate [account]", "revoke", "flag", "/impersonation-log"]),
    ],
)
def test_help_answers_privately_with_the_usage_for_the_callers_powers(send, slack_client, user_id, shown, hidden):
    body = ephemeral_answer(send(slash_command("help", user_id=user_id)))
    text = " ".join(block["text"]["text"] for block in body["blocks"] if block["type"] == "section")
    for line in shown:
        assert line in text
    for line in hidden:
        assert line not in text
    assert problems(body["blocks"], surface="message") == []
    assert slack_client.calls_to("views.open") == []  # no modal: help is an answer


def test_an_unknown_sub_command_names_itself_and_answers_with_the_usage(send, slack_client):
    body = ephemeral_answer(send(slash_command("revok <!channel> now", user_id="UAGENT1")))
    text = body["blocks"][0]["text"]["text"]
    assert text.startswith("`revok` is not an `/impersonate` command.")
    assert "/impersonate [account]" in text and "revoke" not in text.replace("revok`", "")
    body = ephemeral_answer(send(slash_command("<!channel> please", user_id="UAGENT1")))
    assert body["blocks"][0]["text"]["text"].startswith("`&lt;!channel&gt;` is not")  # the person's word, escaped
    assert slack_client.calls_to("views.open") == []
