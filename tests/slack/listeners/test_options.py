"""Typeahead for the modal's external selects (block_suggestion)."""
import pytest

from bot.domain.requests import SEARCH_QUERY_MAX_LENGTH

from bot.slack.ids import ActionId, BlockId
from tests.fakes.directory_data import load_directory
from tests.slack.conftest import response_json
from tests.slack.signed import block_suggestion


@pytest.fixture(autouse=True)
def directory(session_factory, tmp_path):
    load_directory(session_factory, tmp_path)


def chosen_account(value):
    return {
        BlockId.ACCOUNT.value: {
            ActionId.ACCOUNT_SELECT.value: {
                "type": "external_select",
                "selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": value},
            }
        }
    }


def option_values(response):
    assert response.status == 200
    return [o["value"] for o in response_json(response)["options"]]


def test_account_typeahead_searches_the_directory(send):
    assert option_values(send(block_suggestion(ActionId.ACCOUNT_SELECT.value, "", block_id=BlockId.ACCOUNT.value))) == [
        "acme", "globex", "initech", "umbrella"
    ]
    response = send(block_suggestion(ActionId.ACCOUNT_SELECT.value, "glo", block_id=BlockId.ACCOUNT.value))
    assert response_json(response)["options"] == [{"text": {"type": "plain_text", "text": "Globex (globex)", "emoji": True}, "value": "globex"}]


def test_user_typeahead_follows_the_account_chosen_in_the_modal(send):
    acme = send(block_suggestion(ActionId.USER_SELECT.value, "", values=chosen_account("acme"), block_id=BlockId.USER.value))
    assert option_values(acme) == ["u-alice", "u-bob"]
    labels = [o["text"]["text"] for o in response_json(acme)["options"]]
    assert labels[0].endswith("· protected")  # owners/admins are shown, and marked
    globex = send(block_suggestion(ActionId.USER_SELECT.value, "car", values=chosen_account("globex"), block_id=BlockId.USER.value))
    assert option_values(globex) == ["u-carol"]


def test_user_typeahead_before_an_account_is_chosen_offers_nothing(send):
    assert option_values(send(block_suggestion(ActionId.USER_SELECT.value, "", block_id=BlockId.USER.value))) == []


@pytest.mark.parametrize(("action", "block"), [(ActionId.ACCOUNT_SELECT, BlockId.ACCOUNT), (ActionId.USER_SELECT, BlockId.USER)])
def test_no_options_for_someone_without_an_impersonation_role(send, action, block):
    for user in ("UNOBODY1", "USECURITY1"):  # no role at all; a role that cannot impersonate
        response = send(block_suggestion(action.value, "", values=chosen_account("acme"), user_id=user, block_id=block.value))
        assert option_values(response) == []


@pytest.mark.parametrize(("action", "block"), [(ActionId.ACCOUNT_SELECT, BlockId.ACCOUNT), (ActionId.USER_SELECT, BlockId.USER)])
@pytest.mark.parametrize("query", ["glo" + "%_" * 100_000, "a" * 321, "acme" + " " * 500 + "x"])
def test_an_oversized_query_answers_no_options_never_an_error(send, action, block, query):
    # A 200 KB pattern made SQLite refuse the LIKE ("pattern too complex") and the app answer 500.
    response = send(block_suggestion(action.value, query, values=chosen_account("acme"), block_id=block.value))
    assert option_values(response) == []


def test_a_query_of_the_longest_searched_length_is_still_searched(send):
    padded = " " * 1000 + "glo" + " " * 1000  # surrounding spaces do not count
    assert option_values(send(block_suggestion(ActionId.ACCOUNT_SELECT.value, padded, block_id=BlockId.ACCOUNT.value))) == ["globex"]
    at_limit = "x" * SEARCH_QUERY_MAX_LENGTH
    assert option_values(send(block_suggestion(ActionId.ACCOUNT_SELECT.value, at_limit, block_id=BlockId.ACCOUNT.value))) == []
