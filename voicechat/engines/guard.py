"""Keep Whisper from inventing text on audio that holds no speech.

Whisper, given silence or noise, often "hears" stock phrases ("Thank you.",
"Thanks for watching!", "you"). Two guards, used by transcribe and talk alike:
the model's own no-speech probability, and known silence phrases whose audio
is quiet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from voicechat.decode import rms_dbfs

if TYPE_CHECKING:
    import numpy as np

    from voicechat.engines.base import Segment

SILENCE_DBFS = -55.0  # a whole clip quieter than this is treated as silence
QUIET_DBFS = -40.0  # a stock phrase over audio quieter than this is dropped
SILENCE_PHRASES = {
    "",
    "you",
    "thank you",
    "thank you very much",
    "thanks",
    "thanks for watching",
    "thank you for watching",
    "thanks for listening",
    "bye",
    "bye bye",
    "okay",
    "oh",
    "uh",
    "um",
    "hmm",
    "so",
    "music",
    "applause",
    "silence",
    "blank audio",
    "subtitles by the amaraorg community",
    "please subscribe",
}
_NORMALIZE = re.compile(r"[^a-z ]+")


def normalize(text: str) -> str:
    return " ".join(_NORMALIZE.sub(" ", text.lower()).split())


def is_silence(audio: np.ndarray) -> bool:
    return rms_dbfs(audio) < SILENCE_DBFS


def filter_segments(
    segments: Iterable[Segment], audio: np.ndarray, sample_rate: int, no_speech_threshold: float = 0.6
) -> Iterator[Segment]:
    """Yield only the segments that are likely real speech."""
    for seg in segments:
        text = seg.text.strip()
        if not text:
            continue
        if seg.no_speech_prob > no_speech_threshold and seg.avg_logprob < -0.7:
            continue
        if normalize(text) in SILENCE_PHRASES or re.fullmatch(r"[\W_]*|\[.*\]|\(.*\)", text):
            lo, hi = int(seg.start * sample_rate), max(int(seg.end * sample_rate), int(seg.start * sample_rate) + 1)
            if rms_dbfs(audio[lo:hi]) < QUIET_DBFS or seg.no_speech_prob > 0.3:
                continue
        yield seg
