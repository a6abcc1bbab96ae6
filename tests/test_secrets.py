"""Secrets never shown: what scrub() removes from anything voicechat prints or logs."""

import pytest

from voicechat.errors import register_secret, scrub

pytestmark = pytest.mark.fast


def test_openai_and_ephemeral_realtime_keys_are_cut_to_a_prefix():
    text = scrub("server key sk-proj-abcdefghijkl, browser key ek_0123456789abcdefXYZ")
    assert "abcdefghijkl" not in text and "0123456789abcdefXYZ" not in text
    assert "sk-proj-a***" in text and "ek_012345***" in text


def test_a_registered_secret_of_any_shape_is_removed():
    register_secret("hunter2-database-password")
    assert scrub("postgresql://u:hunter2-database-password@db/v") == "postgresql://u:***@db/v"
