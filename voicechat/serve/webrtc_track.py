"""The aiortc side of a WebRTC call: the outgoing reply track, paced in real time, and the incoming audio.

Imported only when a call is made (aiortc is the ``webrtc`` extra). Audio goes both ways as Opus at
48 kHz (aiortc encodes and decodes); the reply track sends a 20 ms frame every 20 ms, silence between
replies, so the browser's jitter buffer and echo canceller see one steady stream.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from voicechat.serve.webrtc_audio import FRAME, RATE, Note, ReplyAudio

MAX_LAG_S = 0.5  # a loop that fell this far behind restarts the clock instead of bursting frames to catch up
RECV_WAIT_S = 1.0  # the incoming track is polled at least this often, so a closed call is noticed


class ReplyTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, audio: ReplyAudio, on_notes: Callable[[list[Note]], None]) -> None:
        super().__init__()
        self.audio = audio
        self.on_notes = on_notes
        self._start: float | None = None
        self._timestamp = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._timestamp += FRAME
            wait = self._start + self._timestamp / RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_LAG_S:
                self._start = now - self._timestamp / RATE
        samples, notes = self.audio.take(FRAME)
        if notes:
            self.on_notes(notes)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


async def listen(track: Any, closed: Any, feed: Callable[[np.ndarray], None]) -> None:
    """Feed the caller's audio (int16 mono, 48 kHz) until the track ends or ``closed`` is set."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    while not closed.is_set():
        try:
            frame = await asyncio.wait_for(track.recv(), RECV_WAIT_S)
        except asyncio.TimeoutError:
            continue
        except MediaStreamError:
            return
        for out in resampler.resample(frame):
            feed(out.to_ndarray().reshape(-1))


def peer() -> Any:
    """A peer connection that gathers host candidates only: no STUN server is asked (no traffic leaves the network)."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[]))
