"""Echo cancellation: a stage between the microphone and the listener.

The speaker reports every block it writes with the time it will sound (``FarEnd.add``); the
microphone stamps every frame with the time it was captured. ``EchoCancelledSource`` wraps the
microphone source: for each frame it takes the far end that sounded at that frame's capture time
(less a small lead, so the echo is always later than its reference) and hands both, in 10 ms
blocks, to a canceller. The listener then sees only the cleaned microphone.

Cancellers (compared in bench/echo.py): ``webrtc`` is WebRTC's AEC3 (package ``livekit``), ``speex``
speexdsp's canceller (package ``pyaec``). AEC3 removes far more echo (~47 dB against ~12 dB) but
also suppresses much of a user talking over it; speex's linear filter keeps the user's words. The
default, ``dual``, runs both on the same signal: AEC3's output decides when someone speaks (voice
detection), speex's output is the audio that is kept and transcribed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.errors import VoicechatError
from voicechat.voice.io import RATE, Frame

if TYPE_CHECKING:
    from voicechat.voice.io import Sink, Source

BLOCK = RATE // 100  # cancellers take 10 ms blocks
LEAD_MS = 20  # the reference is taken this much earlier than the capture time: clocks never make the echo early
FAR_SECONDS = 10  # far end kept (covers any room and device delay)
GATE_DB = 12.0  # see gate()
TAIL_S = 0.3  # the room's echo outlasts the playback by this much
CONVERGED_DB = 15.0  # see EchoCancelledSource._converge
CONVERGED_S = 0.5
SILENT_DB = 40.0  # a microphone this far below what is played does not hear the speaker
QUIET_S, ECHO_S = 0.5, 0.3  # see EchoCancelledSource.hears_speaker
QUIET_WINDOW_S = 1.0  # the microphone is judged deaf to the speaker over this much playback, not per frame
SPEAKER_LATENCY_S = 0.1  # the speaker's buffer with a canceller: an underrun shifts the echo, and AEC3 re-converges


class Canceller:
    """Removes the speaker's echo from the microphone, 10 ms blocks at a time."""

    name = ""
    two_outputs = False  # ``words`` holds a second output of the last block, for the words; else process's output is both
    words = np.zeros(0, dtype=np.int16)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """The microphone's block ``near`` with the echo of the speaker's block ``far`` removed."""
        raise NotImplementedError


class WebRtcCanceller(Canceller):
    """WebRTC AEC3 through livekit's AudioProcessingModule (estimates the remaining delay itself)."""

    name = "webrtc"

    def __init__(self, noise_suppression: bool = False) -> None:
        try:
            from livekit import rtc
        except ImportError:
            raise VoicechatError(
                'echo cancellation "webrtc" needs the package livekit; install it with `pip install "voicechat[aec]"`'
            ) from None
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, noise_suppression=noise_suppression, high_pass_filter=True)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        rtc = self._rtc
        reverse = rtc.AudioFrame(far.tobytes(), RATE, 1, BLOCK)
        self._apm.process_reverse_stream(reverse)
        self._apm.set_stream_delay_ms(LEAD_MS)
        frame = rtc.AudioFrame(near.tobytes(), RATE, 1, BLOCK)
        self._apm.process_stream(frame)
        return np.frombuffer(frame.data, dtype=np.int16).copy()


class SpeexCanceller(Canceller):
    """speexdsp's echo canceller (package pyaec): an adaptive filter over ``filter_ms`` of echo path."""

    name = "speex"

    def __init__(self, filter_ms: int = 400) -> None:
        try:
            from pyaec import Aec
        except (ImportError, OSError):
            raise VoicechatError('echo cancellation "speex" needs the package pyaec; install it with `pip install pyaec`') from None
        self._aec = Aec(BLOCK, RATE * filter_ms // 1000, RATE, True)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = self._aec.cancel_echo(near.tolist(), far.tolist())
        return np.asarray(out, dtype=np.int16)


class ChainCanceller(Canceller):
    """speex's linear filter first, then AEC3 on what is left: AEC3 sees less echo, so it suppresses less
    of a user speaking over it (double talk)."""

    name = "speex+webrtc"

    def __init__(self) -> None:
        self._speex, self._webrtc = SpeexCanceller(), WebRtcCanceller()

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        return self._webrtc.process(self._speex.process(near, far), far)


class DualCanceller(Canceller):
    """AEC3 for voice detection, speex for the words: ``process`` gives AEC3's output, and ``words`` the
    same block through speex."""

    name = "dual"
    two_outputs = True

    def __init__(self) -> None:
        self._speex, self._webrtc = SpeexCanceller(), WebRtcCanceller()
        self.words = np.zeros(BLOCK, dtype=np.int16)

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        self.words = self._speex.process(near, far)
        return self._webrtc.process(near, far)


class NoCanceller(Canceller):
    """The microphone unchanged (the baseline in measurements)."""

    name = "none"

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        return near


CANCELLERS: dict[str, Callable[[], Canceller]] = {
    "dual": DualCanceller,
    "webrtc": WebRtcCanceller,
    "speex": SpeexCanceller,
    "speex+webrtc": ChainCanceller,
    "none": NoCanceller,
}


def make_canceller(name: str) -> Canceller:
    if name not in CANCELLERS:
        raise VoicechatError(f"echo canceller '{name}' is unknown; use one of {', '.join(CANCELLERS)}")
    return CANCELLERS[name]()


def cancel(canceller: Canceller, near: np.ndarray, far: np.ndarray) -> np.ndarray:
    """Run aligned int16 near/far signals of any length through a canceller, 10 ms at a time."""
    return cancel_pair(canceller, near, far)[0]


def cancel_pair(canceller: Canceller, near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like cancel(), giving both of a canceller's outputs: for voice detection, and the words (the same
    signal, but for the dual canceller)."""
    out = np.zeros(len(near), dtype=np.int16)
    words = np.zeros(len(near), dtype=np.int16) if canceller.two_outputs else out
    far = np.concatenate([far, np.zeros(max(0, len(near) - len(far)), dtype=np.int16)])
    for i in range(0, len(near) - BLOCK + 1, BLOCK):
        out[i : i + BLOCK] = canceller.process(near[i : i + BLOCK], far[i : i + BLOCK])
        if words is not out:
            words[i : i + BLOCK] = canceller.words
    return out, words


def gate(out: np.ndarray, near: np.ndarray) -> np.ndarray:
    """While the speaker plays (or its echo still rings), silence 10 ms blocks that the canceller made much
    quieter than the microphone: what it took most of away was echo, and the rest is its leak (while it
    re-converges) rather than a voice; a user speaking over the echo keeps most of the level and passes."""
    out = out.copy()
    for i in range(0, len(out) - BLOCK + 1, BLOCK):
        b = slice(i, i + BLOCK)
        mic = float(np.sum(near[b].astype(np.float64) ** 2))
        left = float(np.sum(out[b].astype(np.float64) ** 2))
        if left < mic * 10 ** (-GATE_DB / 10):
            out[b] = 0
    return out


class FarEnd:
    """What the speaker played, as one 16 kHz stream with the time each block sounded (thread-safe).

    ``add`` is called by the speaker's writer thread for each block with the perf_counter() time its
    first sample sounds; ``read`` by the microphone side for the samples that sounded over a span of
    time. Samples stay contiguous: a block's time only says where the stream was at that moment (small
    jitter in the times shifts the reading a little, it never tears the signal); a pause in playback
    becomes silence."""

    GAP_S = 0.05  # a block this much later than the end of the previous one: playback had paused

    def __init__(self, seconds: float = FAR_SECONDS) -> None:
        self.size = int(RATE * seconds)
        self.buf = np.zeros(self.size, dtype=np.int16)
        self.pos = 0  # samples in the stream so far
        self.marks: list[tuple[float, float]] = []  # (time, stream position) of recent blocks, oldest first
        self.expected = 0.0  # where the next block starts in the stream (by input samples: the resampler lags)
        self._lock = threading.Lock()
        self._rate = RATE
        self._resampler: Any = None

    def add(self, samples: np.ndarray, rate: int, play_time: float) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if self.marks:
                last_time, last_at = self.marks[-1]
                end_time = last_time + (self.expected - last_at) / RATE
                if play_time > end_time + self.GAP_S or rate != self._rate:  # playback paused: silence until now
                    self._restart(int(max(0.0, play_time - end_time) * RATE))
            self._rate = rate
            self.marks.append((play_time, self.expected))
            if len(self.marks) > 1000:
                del self.marks[:500]
            self.expected += len(samples) * RATE / rate
            self._append(self._to_pcm(samples, rate))

    def _to_pcm(self, samples: np.ndarray, rate: int, last: bool = False) -> np.ndarray:
        if rate != RATE:  # a streaming resampler: its output comes in bursts, so marks count input samples
            import soxr

            if self._resampler is None:
                self._resampler = soxr.ResampleStream(rate, RATE, 1, dtype="float32")
            samples = self._resampler.resample_chunk(samples, last=last)
        pcm: np.ndarray = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        return pcm

    def _restart(self, silence: int) -> None:
        """End the stream so far (the resampler's held-back tail included) and add silence."""
        if self._resampler is not None:
            self._append(self._to_pcm(np.zeros(0, dtype=np.float32), self._rate, last=True))
            self._resampler = None
        end = max(self.pos, int(round(self.expected)))
        self._append(np.zeros(min(self.size, end - self.pos + silence), dtype=np.int16))
        self.expected = self.pos

    def cut(self, at_time: float) -> None:
        """Playback was stopped at this time: what was written for later never sounded."""
        with self._lock:
            if not self.marks:
                return
            at = self._position(at_time)
            if at < self.pos:
                self.buf[np.arange(at, self.pos) % self.size] = 0

    def read(self, start_time: float, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        with self._lock:
            if not self.marks:
                return out
            start = self._position(start_time)
            lo, hi = max(start, self.pos - self.size), min(start + n, self.pos)
            if hi > lo:
                out[lo - start : hi - start] = self.buf[np.arange(lo, hi) % self.size]
        return out

    def _position(self, t: float) -> int:
        """The stream position that sounded at time t (by the latest block that had started by then)."""
        mark = self.marks[0]
        for m in reversed(self.marks):
            if m[0] <= t:
                mark = m
                break
        return int(round(mark[1] + (t - mark[0]) * RATE))

    def _append(self, pcm: np.ndarray) -> None:
        pcm = pcm[-self.size :]
        self.buf[np.arange(self.pos, self.pos + len(pcm)) % self.size] = pcm
        self.pos += len(pcm)


class EchoPath:
    """Which frames of the microphone hold a sound the speaker cannot explain (a voice in the room), judged from
    frame levels alone, so it needs no converged canceller: the room gives back what the speaker played ``delay``
    frames later at a steady ``gain``. Both are learnt over the last ``HISTORY_S`` of playback (the delay whose
    levels follow the far end's best, the median level ratio at it); a frame is the near end's own when it is
    ``NEAR_DB`` louder than the echo of the loudest far end around that delay (a frame either side, and the
    room's tail fading at ``DECAY_DB_PER_S`` once the sound stops), and ``NOISE_DB`` above the microphone's noise.
    Until enough echo has been heard, any delay up to ``MAX_DELAY_S`` and a gain of ``GAIN_DB`` are assumed (a
    room rarely gives back more than was played).

    A canceller that re-converges (a reply's start, a pause, an underrun) leaks the reply's echo, and Whisper may
    hear its words as anything ("No, wait."); their level still follows what was played, which this measures."""

    LOUD_DB = 40.0  # a far end this loud (dB over 1 LSB rms, int16) teaches the path
    QUIET_DB = 30.0  # a microphone frame quieter than this holds no voice
    HISTORY_S = 10.0  # the path is learnt over this much of the latest frames
    LEARN_FRAMES = 20  # loud far-end frames heard before the path is trusted
    LEARN_EVERY = 10  # frames between two estimates
    NEAR_DB = 10.0  # see above (the echo's level was within 7 dB of its estimate in the room rig)
    NOISE_DB = 10.0
    DECAY_DB_PER_S = 200.0  # a room's tail fades at least this fast (RT60 0.3 s)
    MAX_DELAY_S = 0.4  # the echo comes at most this late after its reference (as far as the speex filter reaches)
    GAIN_DB = 0.0  # the echo's level against what was played, until learnt

    def __init__(self, frame_ms: int) -> None:
        self.frame_s = frame_ms / 1000
        self.span = max(1, int(round(self.MAX_DELAY_S / self.frame_s)))
        self.tail = int(round(TAIL_S / self.frame_s))
        self.history: deque[tuple[float, float]] = deque(maxlen=max(self.span + self.tail + 4, int(self.HISTORY_S / self.frame_s)))
        self.delay: int | None = None  # in frames; None: not learnt
        self.gain = self.GAIN_DB
        self.noise = 200.0  # the microphone's noise floor (dB): the quietest frames, creeping up 0.5 dB/s
        self._frames = 0

    @staticmethod
    def level(pcm: np.ndarray) -> float:
        """dB over 1 LSB rms (silence: -30)."""
        return float(10 * np.log10(np.mean(pcm.astype(np.float64) ** 2) + 1e-3)) if len(pcm) else -30.0

    def push(self, near: np.ndarray, far: np.ndarray) -> bool:
        """One frame (the microphone's, and the far end aligned with it). True: it holds a sound the speaker cannot
        explain."""
        n = self.level(near)
        self.noise = min(n, self.noise + 0.5 * self.frame_s)
        self.history.append((n, self.level(far)))
        self._frames += 1
        if self._frames % self.LEARN_EVERY == 0:
            self._learn()
        if self.delay is not None:
            lo, hi, gain = max(0, self.delay - 1), self.delay + 2, self.gain
        else:
            lo, hi, gain = 0, self.span, self.GAIN_DB
        decay = self.DECAY_DB_PER_S * self.frame_s
        played = [f for _, f in self.history]
        echo = max(played[-1 - k] + gain - max(0, k - hi) * decay for k in range(lo, min(len(played), hi + 1 + self.tail)))
        return n >= max(echo + self.NEAR_DB, self.noise + self.NOISE_DB, self.QUIET_DB)

    def _learn(self) -> None:
        levels = np.array(self.history, dtype=np.float64)
        near, far = levels[:, 0], levels[:, 1]
        heard = near > max(self.noise + self.NOISE_DB, self.QUIET_DB)
        best: tuple[float, int, float] | None = None
        for d in range(self.span + 1):
            if len(near) <= d + 2:
                break
            t = np.arange(d + 2, len(near))  # the far end d-1 .. d+2 frames before each frame: its loudest
            around = np.max([far[t - k] for k in range(max(0, d - 1), d + 3)], axis=0)
            mask = (around >= self.LOUD_DB) & heard[t]
            if mask.sum() < self.LEARN_FRAMES or np.std(near[t][mask]) == 0 or np.std(around[mask]) == 0:
                continue
            fit = float(np.corrcoef(near[t][mask], around[mask])[0, 1])
            if best is None or fit > best[0]:
                best = (fit, d, float(np.median(near[t][mask] - around[mask])))
        if best is not None:
            _, self.delay, self.gain = best


@dataclass
class EchoStats:
    """Energy of the microphone before and after the canceller while the speaker played (for ERLE)."""

    mic: float = 0.0
    out: float = 0.0
    seconds: float = 0.0

    @property
    def erle_db(self) -> float | None:
        if self.seconds < 0.5 or self.out <= 0 or self.mic <= 0:
            return None
        return float(10 * np.log10(self.mic / self.out))


class EchoCancelledSource:
    """A microphone source whose frames have the speaker's echo removed. Needs a timed source (frames with their
    capture time); everything else passes through. Its frames say which hold a sound the speaker cannot explain
    (``Frame.near``)."""

    def __init__(self, source: Source, far_end: FarEnd, canceller: Canceller) -> None:
        self.source, self.far_end, self.canceller = source, far_end, canceller
        self.frame_ms = source.frame_ms
        self.realtime = source.realtime
        self.timed = source.timed
        self.stats = EchoStats()
        self.converged = False  # until then, the microphone is deaf while the speaker plays (as without a canceller)
        self._good_s = 0.0  # playback so far in which the echo was removed, or not heard
        self._echo_s = 0.0  # playback in which the microphone heard the speaker (and the canceller removed it)
        self._quiet_s = 0.0  # playback in which the microphone heard nothing of it (over QUIET_WINDOW_S)
        self._window: deque[tuple[float, float]] = deque()  # (microphone, far end) energy of the last frames
        self.path = EchoPath(self.frame_ms)

    @property
    def hears_speaker(self) -> bool:
        """False once playback has shown the microphone does not hear the speaker (headphones): then nothing
        needs telling apart from the assistant's echo, and speech over a reply is the user's."""
        return not (self._quiet_s >= QUIET_S and self._echo_s < ECHO_S)

    def clean(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """The canceller's output for one frame and its aligned far end (no gating)."""
        return cancel(self.canceller, near, far)

    def _converge(self, near: np.ndarray, out: np.ndarray, far: np.ndarray) -> None:
        """Converged after CONVERGED_S of playback in which the canceller removed CONVERGED_DB, or in which the
        microphone did not hear the speaker at all (headphones: nothing to remove).

        Whether the microphone hears the speaker at all is judged over the last QUIET_WINDOW_S, not frame by
        frame: the echo comes a room's and the devices' delay after the sound, so at each word that follows a
        gap (and at the start of playback) a frame of the far end is loud while the microphone still hears the
        gap. Counted per frame, that made a room's microphone look deaf to the speaker now and then, and its
        echo was then taken for the user."""
        mic = float(np.sum(near.astype(np.float64) ** 2))
        played = float(np.sum(far.astype(np.float64) ** 2))
        self._window.append((mic, played))
        while len(self._window) * len(near) > QUIET_WINDOW_S * RATE:
            self._window.popleft()
        if not np.any(far):
            return
        left = float(np.sum(out.astype(np.float64) ** 2))
        seconds = len(near) / RATE
        removed, quiet = left * 10 ** (CONVERGED_DB / 10) <= mic and mic > 0, mic <= played * 10 ** (-SILENT_DB / 10)
        self._echo_s += seconds if removed and not quiet else 0.0
        if not self.converged and (removed or quiet):
            self._good_s += seconds
            self.converged = self._good_s >= CONVERGED_S
        full = len(self._window) * len(near) >= 0.9 * QUIET_WINDOW_S * RATE
        playing = sum(1 for _, f in self._window if f > 0) >= 0.8 * len(self._window)
        heard = sum(m for m, _ in self._window)
        if full and playing and heard <= sum(f for _, f in self._window) * 10 ** (-SILENT_DB / 10):
            self._quiet_s += seconds

    def __enter__(self) -> EchoCancelledSource:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        return self.source.exhausted

    def hold(self, held: bool) -> None:
        self.source.hold(held)

    def read(self, timeout: float) -> Frame | None:
        got = self.source.read(timeout)
        if got is None:
            return None
        captured = time.perf_counter() if got.captured_at is None else got.captured_at
        near = np.frombuffer(got.pcm, dtype="<i2")
        reference_at = captured - LEAD_MS / 1000
        far = self.far_end.read(reference_at, len(near))
        out, words = cancel_pair(self.canceller, near, far)
        self._converge(near, out, far)
        heard = self.path.push(near, far)
        if np.any(far):
            self.stats.mic += float(np.sum(near.astype(np.float64) ** 2))
            self.stats.out += float(np.sum(out.astype(np.float64) ** 2))
            self.stats.seconds += len(near) / RATE
        detect = None  # (the speaker is quiet: voice detection judges the words themselves)
        if self.hears_speaker and np.any(
            self.far_end.read(reference_at - TAIL_S, int(TAIL_S * RATE) + len(near))
        ):  # playing, or its echo rings
            if not self.converged:
                out = words = np.zeros_like(out)
            elif words is out:
                out = words = gate(out, near)
            else:
                out = gate(out, near)  # for voice detection only: the words are not gated
                detect = out.astype("<i2").tobytes()
        return Frame(words.astype("<i2").tobytes(), captured_at=captured, detect=detect, near=heard)


def applies(source: Source | None, sink: Sink) -> bool:
    """Echo cancellation can run: a live microphone (frames with capture times) and a loudspeaker that reports what
    it plays."""
    return source is not None and source.timed and sink.audible and sink.reports_far_end


def attach(source: Source, sink: Sink, engine: str) -> EchoCancelledSource:
    """The microphone, cleaned of what the sink plays."""
    far_end = FarEnd()
    cleaned = EchoCancelledSource(source, far_end, make_canceller(engine))
    sink.feed(far_end)
    return cleaned
