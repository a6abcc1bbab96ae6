"""Engines: speech-to-text, chat models and text-to-speech behind small streaming interfaces.

Nothing heavy is imported here; :mod:`voicechat.engines.registry` imports an engine's
module only when that engine is chosen.
"""

from voicechat.engines.base import (
    AudioChunk,
    ChatModel,
    Message,
    Segment,
    SpeechToText,
    TextDelta,
    TextToSpeech,
    Usage,
    Word,
)

__all__ = [
    "AudioChunk",
    "ChatModel",
    "Message",
    "Segment",
    "SpeechToText",
    "TextDelta",
    "TextToSpeech",
    "Usage",
    "Word",
]
