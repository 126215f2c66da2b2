"""Slack's Block Kit and Web API size limits, as named constants.

Builders cut user text to these before it reaches Slack, because Slack refuses a whole view
or message (`invalid_blocks`, `invalid_arguments`) when a single field is too long.
Sources: Slack "Block Kit" reference pages (https://docs.slack.dev/reference/block-kit/blocks,
…/block-elements, …/composition-objects, …/views) and `chat.postMessage` ("text" argument),
as summarised in ../shared/slack-reference/README.md.
"""
from __future__ import annotations

#: blocks in one message (chat.postMessage / chat.update)
MESSAGE_BLOCKS_MAX = 50
#: blocks in one modal or Home tab view
MODAL_BLOCKS_MAX = 100
HOME_BLOCKS_MAX = 100
#: modal `title`, `submit` and `close` texts
MODAL_TITLE_MAX = 24
MODAL_SUBMIT_MAX = 24
MODAL_CLOSE_MAX = 24
#: view `private_metadata`
PRIVATE_METADATA_MAX = 3000
#: view `callback_id` and `external_id`
CALLBACK_ID_MAX = 255
#: section block `text`
SECTION_TEXT_MAX = 3000
#: each of a section block's `fields` (at most 10 of them)
SECTION_FIELD_TEXT_MAX = 2000
SECTION_FIELDS_MAX = 10
#: header block text (plain_text)
HEADER_TEXT_MAX = 150
#: context block: at most 10 elements
CONTEXT_ELEMENTS_MAX = 10
#: button text, value and url
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
BUTTON_URL_MAX = 3000
#: confirmation dialog object: title, text, confirm and deny buttons
CONFIRM_TITLE_MAX = 100
CONFIRM_TEXT_MAX = 300
CONFIRM_BUTTON_MAX = 30
#: plain_text_input `max_length` / `min_length` may not exceed this
PLAIN_TEXT_INPUT_MAX = 3000
#: input block label and hint
INPUT_LABEL_MAX = 2000
INPUT_HINT_MAX = 2000
#: placeholder of an input element
PLACEHOLDER_MAX = 150
#: option object: text (plain_text) and value; options per select menu
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
OPTIONS_MAX = 100
#: block_id and action_id
BLOCK_ID_MAX = 255
ACTION_ID_MAX = 255
#: chat.postMessage / chat.update `text`: Slack truncates longer messages
MESSAGE_TEXT_MAX = 40000
#: `response_action: errors` message per block. Slack documents no limit; this is the
#: project's own bound so a message always fits under the field it explains.
FIELD_ERROR_MAX = 300
