"""What the model sees of the conversation: a system prompt and the recent rounds that fit.

Two limits, both configurable (``memory.max_rounds``, ``memory.max_context_tokens``):
keep at most the last N question/answer rounds, and drop the oldest rounds until
system prompt + kept rounds + the new question fit the token budget. The system
prompt is always kept, and the context never starts on an assistant turn,
because rounds are dropped whole.
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

    def _cost(self, text: str) -> int:
        return self.count_tokens(text) + PER_MESSAGE_OVERHEAD

    def messages_for(self, user_text: str) -> list[Message]:
        """The messages to send for a new question: system, kept rounds, the question."""
        rounds = self.rounds[-self.max_rounds :] if self.max_rounds > 0 else list(self.rounds)
        budget = self.max_context_tokens - self._cost(self.system_prompt) - self._cost(user_text)
        kept: list[tuple[str, str]] = []
        for q, a in reversed(rounds):
            cost = self._cost(q) + self._cost(a)
            if cost > budget:
                break
            budget -= cost
            kept.append((q, a))
        kept.reverse()
        messages = [Message("system", self.system_prompt)] if self.system_prompt else []
        for q, a in kept:
            messages += [Message("user", q), Message("assistant", a)]
        messages.append(Message("user", user_text))
        return messages

    def add(self, user_text: str, assistant_text: str) -> None:
        if assistant_text.strip():
            self.rounds.append((user_text, assistant_text))
        # rounds beyond max_rounds are never sent; keep a bounded list
        if self.max_rounds > 0 and len(self.rounds) > 4 * self.max_rounds:
            self.rounds = self.rounds[-self.max_rounds :]

    def clear(self) -> None:
        self.rounds.clear()
