"""Memory memory: last N rounds, a token budget, the system prompt always kept."""

from __future__ import annotations

import pytest

from voicechat import tokens
from voicechat.conversation.memory import PER_MESSAGE_OVERHEAD, Memory

pytestmark = pytest.mark.fast


def conv(**kw):
    return Memory(system_prompt="You are brief.", count_tokens=lambda t: tokens.count(t, "o200k_base"), **kw)


def roles(messages):
    return [m.role for m in messages]


def test_keeps_last_n_rounds():
    c = conv(max_rounds=2, max_context_tokens=10_000)
    for i in range(5):
        c.add(f"question {i}", f"answer {i}")
    msgs = c.messages_for("question 5")
    assert roles(msgs) == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m.content for m in msgs[1:]] == ["question 3", "answer 3", "question 4", "answer 4", "question 5"]


def test_token_budget_drops_oldest_first_and_keeps_system():
    c = conv(max_rounds=0, max_context_tokens=60)
    for i in range(6):
        c.add(f"question number {i} about things", f"answer number {i} about things")
    msgs = c.messages_for("final question")
    assert msgs[0].role == "system" and msgs[-1].content == "final question"
    assert msgs[1].role == "user", "never starts on an assistant turn"
    used = sum(tokens.count(m.content, "o200k_base") + PER_MESSAGE_OVERHEAD for m in msgs)
    assert used <= 60
    assert msgs[-2].content == "answer number 5 about things", "the newest rounds are the ones kept"
    assert len(msgs) < 2 + 2 * 6


def test_budget_smaller_than_one_round_keeps_only_system_and_question():
    c = conv(max_rounds=8, max_context_tokens=20)
    c.add("a fairly long question " * 5, "a fairly long answer " * 5)
    assert roles(c.messages_for("hi")) == ["system", "user"]


def test_clear_forgets_and_empty_replies_are_not_remembered():
    c = conv()
    c.add("q", "")
    assert roles(c.messages_for("next")) == ["system", "user"]
    c.add("q", "a")
    c.clear()
    assert roles(c.messages_for("next")) == ["system", "user"]
