"""Start-up wiring for the outbox: the scheduler's context carries a Slack courier whose client
leaves rate limits and server errors to the outbox, and the checkpoint file setting."""
from __future__ import annotations

from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler

from bot import wiring
from bot.slack.courier import SlackCourier
from tests.test_wiring import fake_slack, make_settings  # noqa: F401 - fixtures shared with the wiring tests


def test_the_container_wires_the_outbox_courier(make_settings, tmp_path):
    container = wiring.build_container(make_settings(AUDIT_CHECKPOINT_FILE=str(tmp_path / "checkpoints.jsonl")))
    try:
        courier = container.ctx.courier
        assert isinstance(courier, SlackCourier)
        kinds = {type(h) for h in courier._client.retry_handlers}
        # a 429 or a 5xx goes back to the outbox (Retry-After, backoff), never sleeps in a thread
        assert not kinds & {RateLimitErrorRetryHandler, ServerErrorRetryHandler}
        assert courier._client.base_url == container.slack_client.base_url
        assert container.ctx.checkpoint_file == tmp_path / "checkpoints.jsonl"
    finally:
        container.close()


def test_the_background_thread_delivers_with_the_outbox_client(make_settings):
    """What a change owes is sent after the answer by the process's background thread, with
    the courier's client too: a 429 goes back to the outbox instead of sleeping in that thread
    (which sends every other change's messages), and no call outlasts the row's lease."""
    container = wiring.build_container(make_settings())
    try:
        # one deliverer, for the listeners and the pages alike, over the scheduler's courier
        assert container.deliverer is not None and container.deliverer.inner.courier is container.ctx.courier
        assert container.slack_app is not None and container.web_app is not None
        # the listeners' own calls (views.open, ephemeral answers) keep the retrying client
        assert RateLimitErrorRetryHandler in {type(h) for h in container.slack_client.retry_handlers}
    finally:
        container.close()
