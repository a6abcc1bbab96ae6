"""A realtime session's conversation as items: what the model reads, and what the client may retrieve or delete.

:class:`ItemMemory` is the conversation's :class:`~voicechat.conversation.memory.Memory` with the Realtime
API's additions: each round knows the ids of its items (``conversation.item.delete`` takes an item out of
what the model reads), and a function call the client runs leaves the exchange open (``tail``: the
question, the call, then the ``function_call_output`` the client sends) until the model answers it in words,
when it becomes one round (question, answer) like any other.

:class:`ItemStore` keeps the latest form of every item the server announced (``conversation.item.retrieve``),
bounded. Neither knows sockets: the connection feeds them (see :mod:`voicechat.serve.realtime_tools`).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

from voicechat.conversation.memory import Memory
from voicechat.engines.base import Message, ToolCall

MAX_ITEMS = 512  # items a client can still retrieve (the oldest are forgotten first)
NO_RESULT = "no result: the client sent none"


@dataclass
class Entry:
    """One message of the open exchange, and the ids of the items it stands for."""

    ids: list[str]
    message: Message


@dataclass
class ItemMemory(Memory):
    ids: list[tuple[list[str], str | None]] = field(default_factory=list)  # per round: its user item ids, its assistant item id
    tail: list[Entry] = field(default_factory=list)  # the exchange a client's function call left open
    handed: list[tuple[str, ToolCall]] = field(default_factory=list)  # this turn's calls for the client: (item id, call)
    user_ids: list[str] = field(default_factory=list)  # the user items the turn being answered answers
    assistant_id: str | None = None  # its assistant item
    lock: threading.RLock = field(default_factory=threading.RLock)  # the turns and the client's events come from two threads

    def messages_for(self, user_text: str) -> list[Message]:
        with self.lock:
            return self._messages_for(user_text)

    def add(self, user_text: str, assistant_text: str) -> None:
        with self.lock:
            self._add(user_text, assistant_text)

    def output(self, item_id: str, call_id: str, text: str) -> bool:
        """A function_call_output for a call of the open exchange (False: no call of it waits for one)."""
        with self.lock:
            call = self.waiting().get(call_id)
            if call is None:
                return False
            self.tail.append(Entry([item_id], Message("tool", text, tool_call_id=call_id, name=call.name)))
            return True

    def delete(self, item_id: str) -> bool:
        """Take the item out of what the model reads; False if it is not there (any more)."""
        with self.lock:
            return self._delete_from_rounds(item_id) or self._delete_from_tail(item_id)

    def clear(self) -> None:
        with self.lock:
            super().clear()
            self.ids.clear()
            self.tail.clear()

    def waiting(self) -> dict[str, ToolCall]:
        """The open exchange's calls without an output yet, by call id."""
        answered = {e.message.tool_call_id for e in self.tail if e.message.role == "tool"}
        return {c.id: c for e in self.tail for c in e.message.tool_calls if c.id not in answered}

    def answered(self) -> bool:
        """The open exchange ends with an output: a response may continue it."""
        return bool(self.tail) and self.tail[-1].message.role == "tool"

    # what the model reads -----------------------------------------------------------------------
    def _rounds(self) -> list[tuple[str, str]]:
        del self.ids[len(self.rounds) :]  # (a truncate may have popped the last round)
        while len(self.ids) < len(self.rounds):
            self.ids.append(([], None))
        return self.rounds

    def _messages_for(self, user_text: str) -> list[Message]:
        """System, the rounds that fit, the open exchange (calls with their outputs), then ``user_text``
        (empty: the model continues the exchange, as after a function_call_output). Rounds are dropped whole,
        oldest first, as :class:`Memory` does (the start kept while the limits hold); a deleted question or answer
        leaves no message."""
        tail = self.open_exchange()
        rounds = self._rounds()
        budget = self.max_context_tokens - self._cost(self.system_prompt) - (self._cost(user_text) if user_text else 0)
        budget -= sum(self._cost(m.content) + sum(self._cost(c.arguments) for c in m.tool_calls) for m in tail)
        pairs = [[Message(role, text) for role, text in (("user", q), ("assistant", a)) if text.strip()] for q, a in rounds]
        first = self.first_sent(rounds, [sum(self._cost(m.content) for m in pair) for pair in pairs], budget)
        kept = [m for pair in pairs[first:] for m in pair]
        out = ([Message("system", self.system_prompt)] if self.system_prompt else []) + kept + tail
        if user_text:
            out.append(Message("user", user_text))
        return out

    def open_exchange(self) -> list[Message]:
        """The tail as messages an API accepts: every call answered (NO_RESULT if not), no orphan outputs."""
        messages = [e.message for e in self.tail]
        called = {c.id for m in messages for c in m.tool_calls}
        answered = {m.tool_call_id for m in messages if m.role == "tool"}
        out: list[Message] = []
        for m in messages:
            if m.role == "tool" and m.tool_call_id not in called:
                continue
            out.append(m)
            out += [Message("tool", NO_RESULT, tool_call_id=c.id, name=c.name) for c in m.tool_calls if c.id not in answered]
        return out

    # what the turns add -------------------------------------------------------------------------
    def _add(self, user_text: str, assistant_text: str) -> None:
        self._rounds()
        if self.handed:  # the model called the client's functions: the exchange stays open for their outputs
            if user_text:
                self.tail = [Entry(list(self.user_ids), Message("user", user_text))]
            calls = tuple(c for _, c in self.handed)
            ids = [i for i, _ in self.handed] + ([self.assistant_id] if self.assistant_id and assistant_text.strip() else [])
            self.tail.append(Entry(ids, Message("assistant", assistant_text.strip(), tool_calls=calls)))
        else:
            question = user_text or next((e.message.content for e in self.tail if e.message.role == "user"), "")
            user_ids = list(self.user_ids) or [i for e in self.tail if e.message.role == "user" for i in e.ids]
            self.tail = []
            if assistant_text.strip():
                self.rounds.append((question, assistant_text))
                self.ids.append((user_ids, self.assistant_id))
            del self.ids[: self.trim()]  # (each round's ids go with it)
        self.handed, self.user_ids, self.assistant_id = [], [], None

    # conversation.item.delete -------------------------------------------------------------------
    def _delete_from_rounds(self, item_id: str) -> bool:
        rounds = self._rounds()
        for i, (users, assistant) in enumerate(self.ids):
            question, answer = rounds[i]
            if item_id in users:
                self.ids[i] = ([u for u in users if u != item_id], assistant)
                question = ""  # (typed items answered together were one question: it goes whole)
            elif item_id == assistant:
                answer = ""
            else:
                continue
            if question.strip() or answer.strip():
                rounds[i] = (question, answer)
            else:
                del rounds[i], self.ids[i]
            return True
        return False

    def _delete_from_tail(self, item_id: str) -> bool:
        for n, entry in enumerate(self.tail):
            if item_id not in entry.ids:
                continue
            m, index = entry.message, entry.ids.index(item_id)
            entry.ids.pop(index)
            if m.role == "assistant" and index < len(m.tool_calls):  # one call of the message
                entry.message = Message("assistant", m.content, tool_calls=m.tool_calls[:index] + m.tool_calls[index + 1 :])
            elif m.role == "assistant":
                entry.message = Message("assistant", "", tool_calls=m.tool_calls)
            if not entry.ids or (entry.message.role == "assistant" and not entry.message.tool_calls and not entry.message.content):
                del self.tail[n]
            return True
        return False


class ItemStore:
    """The latest form of each item announced, by id (oldest forgotten past MAX_ITEMS)."""

    def __init__(self, limit: int = MAX_ITEMS) -> None:
        self.limit = limit
        self._items: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def seen(self, doc: dict[str, Any]) -> None:
        """An outgoing event: items it announces are kept."""
        if doc.get("type") in ("conversation.item.added", "conversation.item.done"):
            item = doc.get("item")
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                with self._lock:
                    self._items[item["id"]] = item
                    self._items.move_to_end(item["id"])
                    while len(self._items) > self.limit:
                        self._items.popitem(last=False)

    def get(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(item_id)

    def remove(self, item_id: str) -> bool:
        with self._lock:
            return self._items.pop(item_id, None) is not None
