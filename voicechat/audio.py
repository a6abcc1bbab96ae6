"""Sound devices through PortAudio (sounddevice): listing, selection, a speaker and a microphone.

The speaker takes audio chunks as they come and plays them from a writer thread,
so playback overlaps synthesis; ``stop()`` silences it at once (barge-in), and
leaving the ``with`` block drains what is queued. The microphone yields 16 kHz
mono int16 frames. Both are context managers and own no global state.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voicechat.errors import VoicechatError

if TYPE_CHECKING:
    from voicechat.engines.base import AudioChunk

MIC_RATE = 16000


def sd() -> Any:
    """Import sounddevice, turning a missing PortAudio library into one clear line."""
    try:
        import sounddevice
    except OSError:
        raise VoicechatError("the PortAudio library is missing; install it with `sudo apt-get install libportaudio2`") from None
    _quiet_alsa()
    return sounddevice


_alsa_handler: Any = None  # (kept: ALSA calls it for as long as the process lives)


def _quiet_alsa() -> None:
    """ALSA's library prints what it recovers from ("underrun occurred" when a loaded machine feeds the sound
    card late) straight to stderr, over the live view and into a program reading it. Playback goes on either
    way, so those lines go nowhere; with --debug they are kept."""
    global _alsa_handler
    from voicechat.console import debug

    if _alsa_handler is not None or debug():
        return
    import ctypes

    try:
        lib = ctypes.CDLL("libasound.so.2")  # the one PortAudio uses (not on macOS or Windows: nothing to do)
        handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
        _alsa_handler = handler(lambda *args: None)
        lib.snd_lib_error_set_handler(_alsa_handler)
    except (OSError, AttributeError):
        _alsa_handler = False
        return
    import atexit

    atexit.register(lib.snd_lib_error_set_handler, None)  # ALSA's own again before Python winds down


def list_devices() -> list[dict[str, Any]]:
    lib = sd()
    try:
        devices = lib.query_devices()
        default_in, default_out = lib.default.device
    except lib.PortAudioError as e:
        raise VoicechatError(f"cannot list sound devices: {e}") from None
    out = []
    for d in devices:
        out.append(
            {
                "index": d["index"],
                "name": d["name"],
                "hostapi": lib.query_hostapis(d["hostapi"])["name"],
                "inputs": d["max_input_channels"],
                "outputs": d["max_output_channels"],
                "samplerate": int(d["default_samplerate"]),
                "default_input": d["index"] == default_in,
                "default_output": d["index"] == default_out,
            }
        )
    return out


def find_device(spec: str | int | None, kind: str) -> int | None:
    """An index for an index or case-insensitive name substring; None for the system default.

    kind is "input" or "output". Unknown and ambiguous names are errors that list the choices.
    """
    channels = "inputs" if kind == "input" else "outputs"
    devices = [d for d in list_devices() if d[channels] > 0]
    if not devices:
        raise VoicechatError(f"no {kind} sound device found; connect one, or check `voicechat devices`")
    if spec is None or str(spec).strip() == "":
        return None
    text = str(spec).strip()
    choices = "; ".join(f"{d['index']}: {d['name']}" for d in devices)
    if text.isdigit():
        index = int(text)
        if any(d["index"] == index for d in devices):
            return index
        raise VoicechatError(f"no {kind} device with index {index}; choose one of: {choices}")
    matches = [d for d in devices if text.lower() in d["name"].lower()]
    exact = [d for d in matches if d["name"].lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]["index"]
    if not matches:
        raise VoicechatError(f"no {kind} device matches '{text}'; choose one of: {choices}")
    if len(matches) > 1:
        names = "; ".join(f"{d['index']}: {d['name']}" for d in matches)
        raise VoicechatError(f"{kind} device '{text}' is ambiguous; it matches {names}. Give an index or a longer name")
    return matches[0]["index"]


def _device_error(e: Exception, kind: str, device: int | None) -> VoicechatError:
    name = "the default" if device is None else f"device {device}"
    text = str(e)
    if "Invalid sample rate" in text:
        return VoicechatError(f"{kind} {name} does not support the sample rate: {text}; choose another device")
    if "Invalid number of channels" in text or "Error querying device -1" in text:
        return VoicechatError(f"no usable {kind} device ({text}); connect one or pick another with `voicechat devices`")
    return VoicechatError(f"{kind} {name} failed: {text}; check it with `voicechat devices`")


@dataclass
class Played:
    """What the speaker actually played, per chunk: for barge-in, the history keeps only this."""

    texts: list[str] = field(default_factory=list)  # chunks played to the end
    partial: str = ""  # the chunk cut short, as far as it got (by word share)
    samples: int = 0

    def text(self) -> str:
        return " ".join([*self.texts, self.partial]).strip()

    def seconds(self, rate: int | None) -> float | None:
        """How long the sound played lasted, at the device's rate (None: nothing opened yet)."""
        return self.samples / rate if rate else None


class Speaker:
    """Plays audio chunks as they arrive. Use as a context manager.

    ``play(chunk)`` queues; a writer thread opens the stream at the first chunk's
    sample rate if the device takes it (else resamples to the device's rate with
    soxr) and writes in 20 ms blocks so ``stop()`` takes effect at once.
    """

    BLOCK_S = 0.02
    STALL_S = 0.05
    HOLD_MAX_S = 5.0  # a hold nobody releases ends by itself
    RECENT_BLOCKS = 50  # blocks kept for a pause to play again (1 s: more than any output buffer asked for here)

    def __init__(
        self, device: int | str | None = None, *, latency: str | float = "low", max_queued: int = 32, sample_rate: int | None = None
    ) -> None:
        self._prepare_rate = sample_rate  # open the stream up front at this rate, so the first chunk plays at once
        self.device = device if isinstance(device, int) or device is None else find_device(device, "output")
        self.latency = latency
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)  # bounded: synthesis waits for playback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self._rate: int | None = None
        self._resampler: Any = None
        self._src_rate: int | None = None
        self.error: VoicechatError | None = None
        self.first_audio_at: float | None = None
        self.played = Played()
        self.tap: Any = None  # an echo canceller's far end: tap.add(samples, rate, play_time), tap.cut(time)
        self._room = 0  # the output stream's buffer size in frames (the most free space seen)
        self._frames = 0  # frames written to the stream
        self._anchor: float | None = None  # perf_counter() time at which frame 0 sounded
        self._idle = threading.Event()
        self._idle.set()
        self._held_until = 0.0  # perf_counter() time until which playback is held (see hold())
        self._recent: list[np.ndarray] = []  # the last blocks written: what the stream's buffer still holds
        self._dropped = 0  # frames a pause dropped from the buffer when the reply was then stopped

    def __enter__(self) -> Speaker:
        sd()  # fail early when PortAudio is missing
        if self.device is None:
            find_device(None, "output")  # fail early when there is no output device
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.drain()
        else:
            self.stop()
        self.close()

    # public ------------------------------------------------------------------------
    def play(self, chunk: AudioChunk) -> None:
        if self.error is not None:
            raise self.error
        self._idle.clear()
        while not self._stop.is_set():
            try:
                self._queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                if self.error is not None:
                    raise self.error from None

    def drain(self, timeout: float | None = None) -> None:
        """Wait until everything queued has been played."""
        self._queue.put(None)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._idle.wait(0.05):
            if self._thread is None or not self._thread.is_alive():
                break
            if deadline and time.monotonic() > deadline:
                break
        if self.error is not None:
            raise self.error

    def hold(self, on: bool) -> bool:
        """Pause playback at once (``on``), or go on from where it paused. What the device's buffer held is
        dropped at the pause and played again on resuming; a hold ends by itself after HOLD_MAX_S. True when
        sound was playing (or queued) and is now held."""
        if on and (not self.busy or self._stop.is_set()):
            return False  # nothing playing: nothing to hold (a later reply must not start held)
        self._held_until = time.perf_counter() + self.HOLD_MAX_S if on else 0.0
        return on

    @property
    def held(self) -> bool:
        return time.perf_counter() < self._held_until

    def stop(self) -> None:
        """Silence now: drop what is queued and abort the stream."""
        self._stop.set()  # (first: a writer waiting in a pause sees the stop, not a resume)
        self._held_until = 0.0
        if self.tap is not None:
            self.tap.cut(time.perf_counter())
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)

    @property
    def rate(self) -> int | None:
        """The device's sample rate, once a stream is open."""
        return self._rate

    def reset(self) -> None:
        """After stop(): accept new audio again (the next reply)."""
        self._stop.clear()
        self._held_until = 0.0
        self.played = Played()
        self.first_audio_at = None

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def close(self) -> None:
        self._queue.put(StopIteration)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_stream()

    # writer thread -------------------------------------------------------------------
    def _open(self, rate: int) -> None:
        lib = sd()
        target = rate
        try:
            lib.check_output_settings(device=self.device, samplerate=rate, channels=1, dtype="float32")
        except Exception:
            info = lib.query_devices(self.device if self.device is not None else lib.default.device[1])
            target = int(info["default_samplerate"])
        if self._stream is not None and self._rate == target and self._src_rate == rate:
            return
        self._close_stream()
        try:
            self._stream = lib.OutputStream(device=self.device, samplerate=target, channels=1, dtype="float32", latency=self.latency)
            self._stream.start()
        except Exception as e:
            raise _device_error(e, "output", self.device) from None
        self._rate, self._src_rate = target, rate
        self._resampler = None
        if target != rate:
            import soxr

            self._resampler = soxr.ResampleStream(rate, target, 1, dtype="float32")

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                if self._stop.is_set():
                    self._stream.abort()
                else:
                    self._stream.stop()
                self._stream.close()
            except Exception:
                pass
            self._stream = None
            self._room, self._frames, self._anchor, self._recent = 0, 0, None, []

    def _run(self) -> None:
        if self._prepare_rate:  # open the device while the first chunk is being synthesized
            try:
                self._open(self._prepare_rate)
            except VoicechatError as e:
                self.error = e
        while True:
            item = self._queue.get()
            if item is StopIteration:
                return
            if item is None:
                if self._queue.empty():
                    self._flush()
                    self._idle.set()
                continue
            if self._stop.is_set() or self.error is not None:
                continue
            try:
                self._write(item)
            except VoicechatError as e:
                self.error = e
                self._idle.set()
            except Exception as e:  # a device that vanished mid-stream
                self.error = VoicechatError(f"output device stopped during playback: {e}; check `voicechat devices`")
                self._idle.set()

    def _play_time(self, now: float, n: int) -> float:
        """When a block of n frames written now will sound. Each write gives a bound, ``now`` + what the stream
        still holds (its buffer's size, learnt as the most free space seen, less the free space now) + the
        device's latency; the bounds come late, never early, so the earliest offset from the frame count is
        kept (creeping 1 ms/s to follow a slow clock); an empty buffer (an underrun) or a bound far later (a stall)
        starts afresh."""
        rate = self._rate
        assert rate is not None  # (called for a write, on an open stream)
        free = self._stream.write_available
        if free >= self._room:
            self._room, self._anchor = free, None  # the buffer ran dry: playback restarts from now
        estimate = now + (self._room - free) / rate
        offset = estimate - self._frames / rate
        if self._anchor is None or offset > self._anchor + self.STALL_S:  # (a stall: the stream started late, or stopped)
            self._anchor = offset
        else:
            self._anchor = min(offset, self._anchor + n / rate / 1000)
        at = self._anchor + self._frames / rate
        self._frames += n
        return at

    def _flush(self) -> None:
        """Play the resampler's held-back tail at the end of a burst of chunks."""
        if self._resampler is None or self._stream is None or self._stop.is_set():
            return
        try:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                self._stream.write(tail.reshape(-1, 1))
        except Exception:
            pass
        import soxr

        self._resampler = soxr.ResampleStream(self._src_rate, self._rate, 1, dtype="float32")

    def _pause(self) -> bool:
        """Held: abort the stream (its buffer falls silent now), wait, then restart it and write again what the
        buffer had not yet played. False when stopped meanwhile (the stream is closed)."""
        unplayed = max(0, self._room - self._stream.write_available)
        self._stream.abort()
        if self.tap is not None:
            self.tap.cut(time.perf_counter())
        while self.held and not self._stop.is_set():
            time.sleep(0.01)
        if self._stop.is_set():
            self._stream.close()
            self._stream = None
            self._room, self._frames, self._anchor, self._recent = 0, 0, None, []
            self._dropped = unplayed  # written, but dropped by the pause: never heard
            return False
        self._stream.start()
        self._anchor = None
        again = np.concatenate(self._recent)[-unplayed:] if unplayed and self._recent else np.zeros(0, dtype=np.float32)
        self._recent = []
        rate = self._rate
        assert rate is not None  # (a stream is open: it was paused)
        for at in range(0, len(again), max(1, int(rate * self.BLOCK_S))):
            part = again[at : at + int(rate * self.BLOCK_S)]
            if self.tap is not None:
                self.tap.add(part, rate, self._play_time(time.perf_counter(), len(part)))
            self._stream.write(part.reshape(-1, 1))
            self._recent.append(part)  # (in the buffer again: a second pause may drop it again)
        return True

    def _write(self, chunk: AudioChunk) -> None:
        self._open(chunk.sample_rate)
        samples = np.ascontiguousarray(chunk.samples, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        assert self._rate is not None  # (set by _open above)
        block = max(1, int(self._rate * self.BLOCK_S))
        total = len(samples)
        done = 0
        for start in range(0, total, block):
            if self._stop.is_set():
                self._stream.abort()
                self._stream.close()
                self._stream = None
                self._room, self._frames, self._anchor = 0, 0, None
                break
            if self.held and not self._pause():
                done = max(0, done - self._dropped)
                self.played.samples = max(0, self.played.samples - self._dropped)
                break
            part = samples[start : start + block]
            now = time.perf_counter()
            if self.first_audio_at is None:
                self.first_audio_at = now
            at = self._play_time(now, len(part))  # (also learns the buffer's size, which a pause needs)
            if self.tap is not None:
                self.tap.add(part, self._rate, at)
            self._stream.write(part.reshape(-1, 1))
            self._recent = [*self._recent[-self.RECENT_BLOCKS + 1 :], part]
            done += len(part)
            self.played.samples += len(part)
        if total and done >= total:
            self.played.texts.append(chunk.text)
        elif done:
            words = chunk.text.split()
            self.played.partial = " ".join(words[: int(len(words) * done / total)])


class Microphone:
    """16 kHz mono int16 frames from an input device. Use as a context manager; iterate or read()."""

    ADC_SLACK_S = 0.05  # PortAudio's capture stamps are trusted up to the stream's latency and a block, plus this

    def __init__(self, device: int | str | None = None, *, frame_ms: int = 30, latency: str = "low") -> None:
        self.device = device if isinstance(device, int) or device is None else find_device(device, "input")
        self.frame = MIC_RATE * frame_ms // 1000
        self.latency = latency
        self._queue: queue.Queue = queue.Queue(maxsize=1000)
        self._stream: Any = None
        self.overflows = 0
        self._count = 0  # samples captured so far
        self._anchor: float | None = None

    def __enter__(self) -> Microphone:
        lib = sd()
        if self.device is None:
            find_device(None, "input")

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            if status.input_overflow:
                self.overflows += 1
            try:
                self._queue.put_nowait((bytes(indata), self._captured(time.perf_counter(), time_info, frames)))
            except queue.Full:
                self.overflows += 1

        try:
            self._stream = lib.RawInputStream(
                device=self.device,
                samplerate=MIC_RATE,
                channels=1,
                dtype="int16",
                blocksize=self.frame,
                latency=self.latency,
                callback=callback,
            )
            self._stream.start()
        except Exception as e:
            raise _device_error(e, "input", self.device) from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stream is not None:
            try:
                self._stream.abort()
                self._stream.close()
            except Exception:
                pass
            self._stream = None

    def read(self, timeout: float = 0.5) -> bytes | None:
        """One frame of int16 bytes, or None if none arrived within timeout."""
        got = self.read_timed(timeout)
        return None if got is None else got[0]

    def read_timed(self, timeout: float = 0.5) -> tuple[bytes, float] | None:
        """One frame and the perf_counter() time its first sample was captured, or None."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _captured(self, now: float, time_info: Any, frames: int) -> float:
        """The capture time of a block's first sample. Callbacks come late, never early: the frame count
        gives a steady timeline, anchored at the earliest arrival seen (creeping 1 ms/s to follow a slow clock)."""
        block = frames / MIC_RATE
        lag = block + (float(self._stream.latency) if self._stream is not None else 0.0)
        try:  # PortAudio's own stamps, when the host API gives sane ones: not beyond the stream's own latency (a
            # PulseAudio monitor source reported 0.56 s at the start, then 0: frames stamped half a second early)
            adc = time_info.currentTime - time_info.inputBufferAdcTime
            if 0 < adc <= lag + self.ADC_SLACK_S:
                lag = adc
        except Exception:
            pass
        offset = now - lag - self._count / MIC_RATE
        self._anchor = offset if self._anchor is None else min(offset, self._anchor + frames / MIC_RATE / 1000)
        at = self._anchor + self._count / MIC_RATE
        self._count += frames
        return at

    def frames(self, stop: threading.Event) -> Iterator[bytes]:
        while not stop.is_set():
            frame = self.read(0.2)
            if frame is not None:
                yield frame
