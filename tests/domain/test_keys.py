"""The signing key file (bot/domain/keys.py)."""
from __future__ import annotations

import pytest

from bot.domain.keys import KeyError_, load_or_create_signing_key


def test_a_missing_key_outside_dev_names_the_configured_path_in_the_command_to_create_it(tmp_path):
    path = tmp_path / "secrets dir" / "bot-ed25519.pem"
    with pytest.raises(KeyError_) as refused:
        load_or_create_signing_key(path, allow_create=False)
    message = str(refused.value)
    assert f"-out '{path}'" in message and f"chmod 600 '{path}'" in message
    assert "signing_key.pem" not in message
