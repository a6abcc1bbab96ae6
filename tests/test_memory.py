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


def _sent(msgs):
    return [m.content for m in msgs if m.role == "user"][:-1]  # the questions of the rounds sent


def test_the_rounds_sent_start_at_the_same_place_until_a_limit_is_passed_then_drop_to_half():
    """A local model reuses the prompt it read last up to the first change: the oldest round sent stays put until
    a limit is passed, then half of it is dropped at once (not one round at every turn, which would change the
    prompt right after the system prompt each time)."""
    c = conv(max_rounds=4, max_context_tokens=10_000)
    counts, breaks, last = [], 0, None
    for i in range(20):
        msgs = c.messages_for(f"question {i}")
        sent = _sent(msgs)
        counts.append(len(sent))
        if last is not None and sent[: len(last)] != last:
            breaks += 1  # the prompt changed before the new round
        assert c.messages_for(f"question {i}, said in full")[:-1] == msgs[:-1]  # the reply reads what the pause read
        last = sent + [f"question {i}"]
        c.add(f"question {i}", f"answer {i}")
    assert max(counts) == 4 and counts[:5] == [0, 1, 2, 3, 4]
    assert counts[5:9] == [2, 3, 4, 2]  # (past 4 rounds: back to 2, then they grow again)
    assert breaks == 5  # once every third turn from the fifth on (dropping one round per turn: 15), the list trimmed at 16 too


def test_a_token_budget_passed_drops_to_half_of_it_and_never_sends_more_than_it():
    c = conv(max_rounds=0, max_context_tokens=120)
    budget = 120 - (tokens.count("You are brief.", "o200k_base") + PER_MESSAGE_OVERHEAD)
    starts = []
    for i in range(12):
        q = f"question number {i} about things"
        msgs = c.messages_for(q)
        used = sum(tokens.count(m.content, "o200k_base") + PER_MESSAGE_OVERHEAD for m in msgs[1:])
        assert used <= budget
        sent = _sent(msgs)
        starts.append(sent[0] if sent else None)
        c.add(q, f"answer number {i} about things")
    changes = sum(1 for a, b in zip(starts, starts[1:], strict=False) if a != b)
    assert 2 <= changes <= 5, starts  # (one round dropped per turn once full: 9 changes)


def test_rounds_put_in_place_of_the_old_ones_are_sent_afresh():
    c = conv(max_rounds=2, max_context_tokens=10_000)
    for i in range(5):
        c.add(f"question {i}", f"answer {i}")
        c.messages_for("next")
    c.rounds = [(f"other {i}", f"reply {i}") for i in range(4)]  # (a realtime response with its own context)
    assert _sent(c.messages_for("next")) == ["other 2", "other 3"]
