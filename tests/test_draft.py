"""A reply begun before its turn is known to be over (voicechat.voice.draft): what it holds back comes out in order
once confirmed, nothing once dropped, and a drop cancels the reply whenever it comes."""

from __future__ import annotations

import threading

import pytest

from voicechat.voice.draft import Draft

pytestmark = pytest.mark.fast


def test_held_calls_come_out_in_order_once_confirmed_then_pass_straight_through():
    out: list[str] = []
    d = Draft(100)
    cancel = threading.Event()
    assert d.take(cancel)
    d.call(out.append, "user text")
    d.call(out.append, "reply delta")
    assert out == [] and not d.go.is_set()
    assert d.confirm(lambda: out.append("speech ended"))
    assert out == ["speech ended", "user text", "reply delta"] and d.go.is_set() and d.confirmed
    d.call(out.append, "reply done")
    assert not d.drop()  # (too late: it was confirmed)
    assert out == ["speech ended", "user text", "reply delta", "reply done"] and not cancel.is_set()
    assert d.wait(threading.Event())


def test_a_drop_cancels_the_reply_and_lets_nothing_out():
    out: list[str] = []
    d = Draft(100)
    cancel = threading.Event()
    assert d.take(cancel)
    d.call(out.append, "user text")
    assert d.drop()
    assert cancel.is_set() and not d.go.is_set()
    d.call(out.append, "reply delta")
    assert not d.confirm(lambda: out.append("speech ended"))  # (too late: it was dropped; the turn goes as any other)
    assert out == [] and not d.confirmed and not d.wait(threading.Event())


def test_a_draft_dropped_before_the_responder_takes_it_is_not_answered():
    d = Draft(100)
    d.drop()
    cancel = threading.Event()
    assert not d.take(cancel) and cancel.is_set()


def test_waiting_ends_when_the_session_stops():
    stop = threading.Event()
    stop.set()
    assert not Draft(100).wait(stop)
