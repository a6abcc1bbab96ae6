"""Echo cancellation offline: the assistant's speech through a synthetic room (delay, attenuation,
reverb) mixed with a user's speech, cleaned by each canceller; and the far-end timeline the
speaker feeds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import speak, wer
from voicechat.voice.echo import FarEnd, cancel, cancel_pair, make_canceller
from voicechat.voice.io import Frame
from voicechat.voice.room import erle_db, through_room, to_pcm

REPLY = (
    "Paris is the capital of France. It sits on the river Seine and is known for the Eiffel Tower, "
    "its museums and its cafes. Many millions of people visit it every year."
)
USER = "Please stop and tell me the time in Tokyo."


@pytest.fixture(scope="module")
def voices():
    return speak(REPLY, steady=True), speak(USER, steady=True)  # the same takes in every run: results comparable


def mix(reply: np.ndarray, user: np.ndarray, delay_ms: float, gain: float, user_at_s: float = 4.0):
    echo = through_room(reply, delay_ms, gain)
    at = int(16000 * user_at_s)
    mic = echo.copy()
    mic[at : at + len(user)] += user
    return echo, mic, at


ROOMS = [(30, 0.8), (90, 0.5), (150, 0.4)]


@pytest.mark.parametrize("delay_ms,gain", ROOMS)
def test_webrtc_removes_the_echo(voices, delay_ms, gain):
    reply, user = voices
    echo, mic, at = mix(reply, user, delay_ms, gain)
    cleaned = cancel(make_canceller("webrtc"), to_pcm(mic), to_pcm(reply)).astype(np.float32) / 32767
    settled = slice(16000, at)  # echo only, after the first second
    assert erle_db(mic[settled], cleaned[settled]) >= 20


def test_the_user_is_understood_over_the_echo(voices, hear):
    """The user's question over the echo, in three rooms, with the canceller warm from an earlier reply (as in a
    conversation): the dual canceller's words (speex) are about as intelligible as with no echo at all, and far more
    than the raw microphone's, while its voice detection path (AEC3) has removed the echo. (AEC3's own output, which
    suppresses part of a voice over the echo, is measured against them in bench/echo.py.)"""
    reply, user = voices
    alone = wer(USER, hear(user, 16000))
    raw, words = [], []
    for delay_ms, gain in ROOMS:
        far = np.concatenate([reply, reply])  # the first reply warms the canceller
        echo, mic, at = mix(far, user, delay_ms, gain, user_at_s=len(reply) / 16000 + 4.0)
        spoken = slice(at, at + len(user) + 8000)
        raw.append(wer(USER, hear(mic[spoken], 16000)))
        kept = cancel_pair(make_canceller("dual"), to_pcm(mic), to_pcm(far))[1]
        words.append(wer(USER, hear(kept[spoken].astype(np.float32) / 32767, 16000)))
        only_echo = cancel_pair(make_canceller("dual"), to_pcm(echo), to_pcm(far))[0].astype(np.float32) / 32767
        assert erle_db(echo[len(reply) :], only_echo[len(reply) :]) >= 20
    assert np.mean(words) <= alone + 0.12, (words, alone)
    assert np.mean(words) < np.mean(raw), (words, raw)


def test_speex_removes_some_echo(voices):
    reply, _ = voices
    echo = through_room(reply, 90, 0.5)
    cleaned = cancel(make_canceller("speex"), to_pcm(echo), to_pcm(reply)).astype(np.float32) / 32767
    assert erle_db(echo[16000:], cleaned[16000:]) >= 3


def test_far_end_keeps_the_stream_whole_across_blocks_and_pauses():
    """Blocks at 22050 Hz with their play times come out at 16 kHz where they sounded; a pause is silence."""
    rate = 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    far = FarEnd()
    t0 = 100.0
    block = 441
    for i in range(0, rate, block):
        far.add(tone[i : i + block], rate, t0 + i / rate)
    later = t0 + 3.0  # a second reply after a pause
    for i in range(0, rate, block):
        far.add(tone[i : i + block], rate, later + i / rate)
    first = far.read(t0 + 0.2, 8000).astype(np.float32) / 32767
    expected = np.sin(2 * np.pi * 440 * (0.2 + np.arange(8000) / 16000)) * 0.5
    assert np.corrcoef(first, expected)[0, 1] > 0.95
    assert not np.any(far.read(t0 + 1.5, 8000))  # the pause
    assert np.corrcoef(far.read(later + 0.2, 8000).astype(np.float32), expected)[0, 1] > 0.95
    far.cut(later + 0.5)
    assert not np.any(far.read(later + 0.6, 1600))  # stopped: nothing sounded after the cut


def test_unknown_canceller_is_a_clear_error():
    from voicechat.errors import VoicechatError

    with pytest.raises(VoicechatError, match="webrtc"):
        make_canceller("nope")


def test_speech_over_the_reply_is_told_from_the_reply_by_its_words(hear):
    """The check behind barge-in on loudspeakers (voice.self_echo): Whisper's transcript of a stretch of the
    reply heard back through the room is the assistant's own voice; a user cutting in is not, even when most of
    their words ("what", "is", "the") are also in the reply."""
    from voicechat.voice.self_echo import OWN, UNSURE, USER, verdict

    for fragment in ("It sits on the river Seine", "known for the Eiffel Tower, its museums"):
        heard = hear(through_room(speak(fragment, steady=True), 80, 0.5), 16000)
        assert verdict(heard, REPLY) == OWN, heard
    for said in ("Stop. What time is it in Tokyo?", "Wait, what is the capital of Italy?", "Hold on a second."):
        heard = hear(speak(said, steady=True), 16000)
        assert verdict(heard, REPLY) == USER, heard
    assert verdict("", REPLY) == UNSURE  # no words yet: listen to more of it
    story = "Once upon a time, in a land far away, there lived a dragon."
    assert verdict("What time is", story) == UNSURE  # one word of the reply's: not yet the reply coming back
    assert verdict("What time is it in Tokyo?", story) == USER
    assert verdict("What is it?", "What it is, is a dragon.") == UNSURE  # only common words: not known yet
    from voicechat.voice.self_echo import is_stop

    assert is_stop(hear(speak("Stop.", steady=True), 16000), story) and is_stop("Hold on.", story)
    assert not is_stop("Same way.", story) and not is_stop("Wait.", "You have to wait a while.")
    assert is_stop("Okay, stop.", story) and is_stop("Wait a second.", story)
    assert is_stop("Stop. Wait a moment.", story) and is_stop("No, stop, hold on.", story)
    assert is_stop("Okay, stop, wait a second.", story)  # (CI heard a user's "Stop, wait a moment." so)
    assert not is_stop("I don't wait.", story)  # a garbled echo with a stop word in it (heard on the rig)
    assert is_stop("Stop it.", story) and is_stop("Stop talking, please.", story) and is_stop("Shut up.", story)
    assert is_stop("Be quiet.", story) and is_stop("Wait for me.", story)
    assert not is_stop("Stop the car at the station.", story) and not is_stop("What time is it?", story)
    assert verdict("Stop.", "") == USER


class MicFrames:
    """A live microphone's 30 ms frames of ``pcm`` (16 kHz int16), each stamped with its capture time from ``t0``."""

    frame_ms, realtime, timed, hears_speaker, exhausted = 30, True, True, True, False

    def __init__(self, pcm: np.ndarray, t0: float) -> None:
        self.pcm, self.t0, self.at = pcm, t0, 0

    def read(self, timeout):
        if self.at + 480 > len(self.pcm):
            return None
        frame, self.at = self.pcm[self.at : self.at + 480], self.at + 480
        return Frame(frame.astype("<i2").tobytes(), captured_at=self.t0 + (self.at - 480) / 16000)


def _through_source(reply: np.ndarray, mic: np.ndarray, start_delay_s: float = 0.5):
    """Run a reply and what the microphone heard of it through EchoCancelledSource, frame by frame with capture
    times (as a live microphone gives them); the moment it decided the microphone does not hear the speaker."""
    from voicechat.voice.echo import EchoCancelledSource

    far, t0 = FarEnd(), 1000.0
    for i in range(0, len(reply), 320):
        far.add(reply[i : i + 320], 16000, t0 + start_delay_s + i / 16000)
    pcm = to_pcm(np.concatenate([np.zeros(int(16000 * start_delay_s), np.float32), mic]))

    source = EchoCancelledSource(MicFrames(pcm, t0), far, make_canceller("dual"))
    deaf_at = None
    while (got := source.read(0)) is not None:
        if not source.hears_speaker and deaf_at is None:
            deaf_at = got.captured_at - t0 - start_delay_s
    return source, deaf_at


@pytest.mark.parametrize("delay_ms", [100, 300, 700])
def test_a_room_with_a_late_echo_is_never_taken_for_headphones(voices, delay_ms):
    """The echo comes late (the room and the devices' buffers), so at every word after a gap the far end is loud
    while the microphone still hears the gap. That must not make the microphone look deaf to the speaker: its echo
    would then be taken for the user, and cut the reply."""
    reply, _ = voices
    source, deaf_at = _through_source(reply, through_room(reply, delay_ms, 0.6))
    assert deaf_at is None and source.hears_speaker and source.converged


def test_a_microphone_that_hears_nothing_of_the_speaker_is_recognised(voices):
    """Headphones: after about a second of playback the microphone is known not to hear the speaker."""
    reply, _ = voices
    source, deaf_at = _through_source(reply, np.zeros_like(reply))
    assert deaf_at is not None and deaf_at < 2.0 and source.converged


# -- which frames hold a voice the speaker cannot explain (EchoPath) ----------------------------------------------------
def _near_frames(far: np.ndarray, mic: np.ndarray, frame: int = 480) -> list[bool]:
    from voicechat.voice.echo import EchoPath

    path = EchoPath(frame * 1000 // 16000)
    far_pcm, mic_pcm = to_pcm(far), to_pcm(mic)
    return [path.push(mic_pcm[i : i + frame], far_pcm[i : i + frame]) for i in range(0, len(mic_pcm) - frame + 1, frame)]


@pytest.mark.parametrize("delay_ms,gain", ROOMS + [(250, 1.0)])
def test_the_replys_echo_is_never_a_voice_the_speaker_cannot_explain(voices, delay_ms, gain):
    """From the first frame on (before the room is learnt), through gaps between words and after the reply stops
    with its echo still ringing, what the room gives back of the reply is explained by it: a canceller's leak of
    it is never taken for someone speaking (the rig's "No, wait.")."""
    reply, _ = voices
    far = np.concatenate([reply, np.zeros(16000, np.float32)])  # then a second of the room's tail
    assert not any(_near_frames(far, through_room(far, delay_ms, gain, reverb_ms=120)))


@pytest.mark.parametrize("delay_ms,gain", ROOMS)
def test_a_word_said_over_the_reply_is_a_voice_the_speaker_cannot_explain(voices, delay_ms, gain):
    """ "Stop." said over the reply (once the room is learnt): frames of it are found, and only while it sounds."""
    reply, _ = voices
    stop = speak("Stop.", steady=True)
    echo = through_room(reply, delay_ms, gain)
    at = 16000 * 4
    mic = echo.copy()
    mic[at : at + len(stop)] += stop
    near = _near_frames(reply, mic)
    voiced = np.flatnonzero(np.abs(stop) > 0.02)
    first, last = (at + voiced[0]) // 480, (at + voiced[-1]) // 480
    found = [i for i, n in enumerate(near) if n]
    assert len(found) >= 3, (delay_ms, gain, found)
    assert all(first - 1 <= i <= last + 1 for i in found), (first, last, found)


def test_the_cancelled_frames_say_which_hold_a_voice(voices):
    """The echo canceller's frames carry it (Frame.near), for barge-in to weigh (voice.barge)."""
    from voicechat.voice.echo import EchoCancelledSource

    reply, user = voices
    far, t0 = FarEnd(), 1000.0
    for i in range(0, len(reply), 320):
        far.add(reply[i : i + 320], 16000, t0 + i / 16000)
    mic = through_room(reply, 90, 0.5)
    mic[16000 * 5 : 16000 * 5 + len(user)] += user[: len(mic) - 16000 * 5]
    pcm = to_pcm(mic)

    source = EchoCancelledSource(MicFrames(pcm, t0), far, make_canceller("dual"))
    frames = []
    while (got := source.read(0)) is not None:
        assert got.near is not None
        frames.append(got.near)
    split = 16000 * 5 // 480
    assert not any(frames[:split]) and sum(frames[split:]) >= 5
