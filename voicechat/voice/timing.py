"""Where the time of one turn went, in seconds (a record, not a dict of strings)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class TurnTiming:
    endpoint: float | None = None  # end of speech -> the turn was judged complete
    stt: float | None = None  # turn complete -> final transcript (0 when it was ready: transcribed during the pause)
    transcript: float | None = None  # end of speech -> final transcript ready (often before the turn was judged complete)
    first_token: float | None = None  # request sent -> first token of the reply
    first_chunk: float | None = None  # turn complete -> first speakable chunk written
    first_audio: float | None = None  # turn complete -> first reply sample at the sink
    voice_to_voice: float | None = None  # end of speech -> first reply sample at the sink

    def to_dict(self) -> dict[str, float]:
        """The known figures, rounded to milliseconds (the form kept in the history and --json)."""
        return {f.name: round(v, 3) for f in fields(self) if (v := getattr(self, f.name)) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> TurnTiming:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
