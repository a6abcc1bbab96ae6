"""What the model sees of the conversation: a system prompt and the recent rounds that fit.

Two limits, both configurable (``memory.max_rounds``, ``memory.max_context_tokens``):
keep at most the last N question/answer rounds, and drop the oldest rounds until
system prompt + kept rounds + the new question fit the token budget. The system
prompt is always kept, and the context never starts on an assistant turn,
because rounds are dropped whole.

The oldest round sent stays the same from one turn to the next until a limit is passed; then the oldest
rounds are dropped until half of each limit is used. A local model keeps the prompt it last read and reuses
the part that did not change: dropping one round at every turn once the conversation is full would change
the prompt right after the system prompt, and every turn would read the whole conversation again (seconds on
a CPU), where now it happens once in about max_rounds / 2 turns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from voicechat.engines.base import Message

PER_MESSAGE_OVERHEAD = 4  # role and separator tokens of chat templates, roughly


@dataclass
class Memory:
    system_prompt: str
    max_rounds: int = 8
    max_context_tokens: int = 1536
    count_tokens: Callable[[str], int] = field(default=lambda text: max(1, len(text) // 4))
    rounds: list[tuple[str, str]] = field(default_factory=list)
    _after: tuple[str, str] | None = field(default=None, repr=False)  # the newest round dropped when the rounds sent last began
    _placed: bool = field(default=False, repr=False)  # rounds were sent since the last clear

    def _cost(self, text: str) -> int:
        return self.count_tokens(text) + PER_MESSAGE_OVERHEAD

    def messages_for(self, user_text: str) -> list[Message]:
        """The messages to send for a new question: system, kept rounds, the question."""
        budget = self.max_context_tokens - self._cost(self.system_prompt) - self._cost(user_text)
        first = self.first_sent(self.rounds, [self._cost(q) + self._cost(a) for q, a in self.rounds], budget)
        messages = [Message("system", self.system_prompt)] if self.system_prompt else []
        for q, a in self.rounds[first:]:
            messages += [Message("user", q), Message("assistant", a)]
        messages.append(Message("user", user_text))
        return messages

    def first_sent(self, rounds: list[tuple[str, str]], costs: list[int], budget: int) -> int:
        """The index of the oldest of ``rounds`` to send (their token ``costs``; ``budget`` tokens for them): where
        the rounds sent last began, while the limits hold from there; else the oldest from which half of each limit
        is used (the first time: the oldest from which the limits hold)."""

        def fits(first: int, share: float) -> bool:
            n = len(rounds) - first
            within = self.max_rounds <= 0 or n <= max(1, int(self.max_rounds * share)) or n == 0
            return within and sum(costs[first:]) <= budget * share

        start, share = 0, 1.0
        if self._placed:
            after = next((i for i in range(len(rounds) - 1, -1, -1) if rounds[i] is self._after), None)
            if after is not None or self._after is None:
                start = 0 if after is None else after + 1
                share = 1.0 if fits(start, 1.0) else 0.5
        first = next((i for i in range(start, len(rounds)) if fits(i, share)), len(rounds))
        self._after, self._placed = (rounds[first - 1] if first > 0 else None), True
        return first

    def add(self, user_text: str, assistant_text: str) -> None:
        if assistant_text.strip():
            self.rounds.append((user_text, assistant_text))
        self.trim()

    def trim(self) -> int:
        """Keep a bounded list: rounds beyond max_rounds are never sent, but those sent last (and the one before
        them, where they begin) stay. How many were dropped from the start."""
        if self.max_rounds <= 0 or len(self.rounds) <= 4 * self.max_rounds:
            return 0
        after = next((i for i in range(len(self.rounds) - 1, -1, -1) if self.rounds[i] is self._after), None)
        cut = len(self.rounds) - self.max_rounds if after is None else min(after, len(self.rounds) - self.max_rounds)
        del self.rounds[:cut]
        return cut

    def clear(self) -> None:
        self.rounds.clear()
        self._after, self._placed = None, False
