"""Wake words over Wyoming: the decision frame by frame and the event handling with a scripted scorer (fast),
then the `wyoming` package's own client against a real `voicechat serve --wyoming` on loopback: describe lists
the words, a wake word spoken by Piper inside a longer stream is detected near where it was said, speech
without it is not, and an unknown word is an error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.helpers import speak
from tests.serveproc import ServeProcess, free_port

FRAME = 2560  # bytes in one 80 ms frame of 16 kHz int16


# --- fast: the decision, frames in, detections out ------------------------------------------------------------------


class Scripted:
    """A scorer whose probability for each word is written in the frame: its first sample / 32767, for the
    word given by its second sample (0 hey_jarvis, full scale alexa)."""

    def __init__(self, words=("hey_jarvis", "alexa")) -> None:
        self.words = set(words)
        self.forgot = 0
        self.closed = False

    def scores(self, frame: bytes) -> dict[str, float]:
        x = np.frombuffer(frame, dtype="<i2")
        word = "alexa" if x[1] > 16384 else "hey_jarvis"
        return {word: x[0] / 32767} if word in self.words else {}

    def use(self, words) -> None:
        self.words = set(words)

    def forget(self) -> None:
        self.forgot += 1

    def close(self) -> None:
        self.closed = True


def frames(*probs: float, word: int = 0) -> bytes:
    out = np.zeros((len(probs), FRAME // 2), dtype="<i2")
    out[:, 0] = np.round(np.asarray(probs) * 32767)
    out[:, 1] = word * 32767
    return out.tobytes()


@pytest.mark.fast
def test_a_word_is_detected_once_per_utterance_and_again_after_the_refractory_period():
    from voicechat.voice.wake_words import Hit, WakeDetector

    scorer = Scripted()
    d = WakeDetector(scorer, threshold=0.5, refractory_s=2.0)
    assert d.feed(frames(0.1, 0.2, 0.4)) == []
    assert d.feed(frames(0.7)) == [Hit("hey_jarvis", 320)]  # stamped at the end of the frame that decided
    assert scorer.forgot == 1  # the words' memory is cleared, as talk's wake gate resets its detector
    assert d.feed(frames(*[0.9] * 25)) == []  # the same utterance, still loud: 2 s of audio give nothing
    assert d.feed(frames(0.9)) == [Hit("hey_jarvis", 320 + 26 * 80)]  # then listening goes on in the same stream
    assert d.feed(frames(0.9, word=1)) == []  # any word is quiet in the refractory period


@pytest.mark.fast
def test_audio_is_decided_in_whole_frames_whatever_the_chunking():
    from voicechat.voice.wake_words import WakeDetector

    audio = frames(0.0, 0.0, 0.0, 0.8, 0.0) * 3
    whole = WakeDetector(Scripted(), 0.5, refractory_s=0.3).feed(audio)
    bits = WakeDetector(Scripted(), 0.5, refractory_s=0.3)
    odd = [h for i in range(0, len(audio), 333) for h in bits.feed(audio[i : i + 333])]
    assert odd == whole and len(whole) == 3
    assert len(bits._pending) < FRAME  # less than a frame ever waits: memory is bounded however long the stream


@pytest.mark.fast
def test_the_most_probable_word_is_said_when_two_pass_in_one_frame():
    from voicechat.voice.wake_words import WakeDetector

    class Both(Scripted):
        def scores(self, frame):
            return {"hey_jarvis": 0.6, "alexa": 0.9}

    assert [h.word for h in WakeDetector(Both(), 0.5).feed(frames(1.0))] == ["alexa"]


@pytest.mark.fast
def test_names_clients_use_are_the_built_in_words():
    from pyopen_wakeword import Model

    from voicechat.voice.wake import WORDS
    from voicechat.voice.wake_words import BUILTIN, resolve

    assert set(BUILTIN) == set(WORDS) == {m.value for m in Model}
    assert resolve(None) == ({w: w for w in BUILTIN}, [])
    chosen, unknown = resolve(["Hey Jarvis", "ok_nabu", "okay_nabu_v0.1", "computer", "hey-mycroft"])
    assert chosen == {"hey_jarvis": "Hey Jarvis", "okay_nabu": "ok_nabu", "hey_mycroft": "hey-mycroft"}
    assert unknown == ["computer"]


@pytest.mark.fast
def test_info_lists_the_wake_words_with_their_phrase_languages_and_attribution():
    from wyoming.info import Attribution, Info

    from voicechat.serve.wyoming_wake import wake_program

    program = wake_program("1.0", Attribution(name="voicechat", url="https://example.org"))
    info = Info.from_event(Info(wake=[program]).event())  # survives the trip through an event
    models = {m.name: m for m in info.wake[0].models}
    assert set(models) == {"alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu"}
    jarvis = models["hey_jarvis"]
    assert jarvis.phrase == "Hey Jarvis" and jarvis.languages == ["en"] and jarvis.installed
    assert jarvis.description == "Hey Jarvis"  # Home Assistant shows the description as the word's name
    assert "openWakeWord" in jarvis.attribution.name and "CC BY-NC-SA 4.0" in jarvis.attribution.name


class Wire:
    """A WakeListener with a scripted scorer; what it sends is kept."""

    def __init__(self, slots: int = 1) -> None:
        from voicechat.serve.wyoming import _Converter
        from voicechat.serve.wyoming_wake import WakeListener

        self.sent: list = []
        self.slots, self.taken = slots, 0
        self.scorers: list[Scripted] = []

        async def send(event):
            self.sent.append(event)

        async def fail(text, code):
            self.sent.append(("error", text))

        async def take():
            if self.taken >= self.slots:
                await fail("busy", "busy")
                return False
            self.taken += 1
            return True

        def release():
            self.taken -= 1

        def make(words):
            self.scorers.append(Scripted(words))
            return self.scorers[-1]

        self.listener = WakeListener(send, fail, threshold=0.5, take_slot=take, release_slot=release, convert=_Converter, scorer=make)

    def kinds(self) -> list[str]:
        return [e[0] if isinstance(e, tuple) else e.type for e in self.sent]


@pytest.mark.fast
def test_detect_then_audio_gives_a_detection_named_as_asked_and_no_not_detected_at_the_end():
    from wyoming.wake import Detect

    async def go():
        w = Wire()
        await w.listener.detect(Detect(names=["Hey Jarvis"], context={"room": "kitchen"}).event())
        assert await w.listener.start(16000, 2, 1)
        await w.listener.chunk(frames(0.0, 0.0, 0.9, 0.0))
        await w.listener.stop()
        return w

    w = asyncio.run(go())
    assert w.kinds() == ["detection"]
    assert w.sent[0].data == {"name": "Hey Jarvis", "timestamp": 240, "speaker": None, "context": {"room": "kitchen"}}
    assert w.taken == 0 and w.scorers[0].closed  # the stream's slot and models are given back


@pytest.mark.fast
def test_no_word_heard_is_not_detected_and_words_not_asked_for_are_not_heard():
    from wyoming.wake import Detect

    async def go():
        w = Wire()
        await w.listener.detect(Detect(names=["alexa"]).event())
        await w.listener.start(16000, 2, 1)
        await w.listener.chunk(frames(0.9, 0.9, word=0))  # hey_jarvis, not asked for
        await w.listener.stop()
        await w.listener.stop()  # detect, then audio-stop with no audio: answered too
        return w

    assert asyncio.run(go()).kinds() == ["not-detected", "not-detected"]


@pytest.mark.fast
def test_unknown_names_are_an_error_naming_them_and_the_known_ones_are_listened_for():
    from wyoming.wake import Detect

    async def go():
        w = Wire()
        await w.listener.detect(Detect(names=["computer", "alexa"]).event())
        await w.listener.start(16000, 2, 1)
        await w.listener.chunk(frames(0.9, word=1))
        nothing = Wire()
        await nothing.listener.detect(Detect(names=["computer"]).event())
        await nothing.listener.start(16000, 2, 1)
        await nothing.listener.chunk(frames(0.9, 0.9, word=1))
        await nothing.listener.stop()
        return w, nothing

    w, nothing = asyncio.run(go())
    assert w.kinds() == ["error", "detection"] and "'computer'" in w.sent[0][1] and "hey_jarvis" in w.sent[0][1]
    assert nothing.kinds() == ["error", "not-detected"] and "nothing to listen for" in nothing.sent[0][1]


@pytest.mark.fast
def test_a_satellite_asking_again_mid_stream_changes_the_words_and_the_stream_goes_on():
    from wyoming.wake import Detect

    async def go():
        w = Wire()
        await w.listener.detect(Detect(names=["alexa"]).event())
        await w.listener.start(16000, 2, 1)
        await w.listener.chunk(frames(0.9))  # hey_jarvis: not asked for yet
        await w.listener.detect(Detect(names=["hey_jarvis"]).event())
        await w.listener.chunk(frames(0.9))
        return w

    w = asyncio.run(go())
    assert w.kinds() == ["detection"] and w.sent[0].data["timestamp"] == 160 and len(w.scorers) == 1


@pytest.mark.fast
def test_any_width_and_channels_are_converted_and_a_refused_stream_says_so():
    from wyoming.wake import Detect

    async def go():
        w = Wire(slots=1)
        await w.listener.detect(Detect().event())
        await w.listener.start(16000, 4, 2)  # 32-bit stereo
        mono = np.frombuffer(frames(0.0, 0.9, 0.0), dtype="<i2").astype("<i4") << 16
        await w.listener.chunk(np.repeat(mono[:, None], 2, axis=1).tobytes())
        other = Wire(slots=0)
        await other.listener.detect(Detect().event())
        refused = await other.listener.start(16000, 2, 1)
        return w, other, refused

    w, other, refused = asyncio.run(go())
    assert [(e.type, e.data["timestamp"]) for e in w.sent] == [("detection", 160)]
    assert refused is False and other.kinds() == ["error"] and other.taken == 0


class Socket:
    """What a Connection writes, read back as events."""

    def __init__(self) -> None:
        self.data = b""

    def writelines(self, parts) -> None:
        self.data += b"".join(parts)

    def write(self, part: bytes) -> None:
        self.data += part

    async def drain(self) -> None:
        pass

    def events(self) -> list:
        import io
        import json

        out, buf = [], io.BytesIO(self.data)
        while line := buf.readline():
            header = json.loads(line)
            data = header.get("data") or {}
            if header.get("data_length"):
                data.update(json.loads(buf.read(header["data_length"])))
            buf.read(header.get("payload_length") or 0)
            out.append((header["type"], data))
        return out


def connection(slots: int = 8):
    """A Wyoming Connection as the server makes one, on a state with only what the wake path uses, and the
    scripted scorer in place of the models."""
    from types import SimpleNamespace

    from voicechat.config import Config
    from voicechat.serve.wyoming import Connection

    sessions: dict = {}

    def add(conn):
        if len(sessions) >= slots:
            return None
        sessions[len(sessions) + 1] = conn
        return len(sessions)

    refused = SimpleNamespace(labels=lambda *a: SimpleNamespace(inc=lambda: None))
    state = SimpleNamespace(
        cfg=Config(),
        ready=True,
        stt=SimpleNamespace(
            name="faster-whisper", languages=["en"], model_name="tiny.en"
        ),  # what a transcribe event's language is checked against
        add_session=add,
        remove_session=lambda n: sessions.pop(n, None),
        metrics=SimpleNamespace(refused=refused),
    )
    sock = Socket()
    conn = Connection(SimpleNamespace(state=state), None, sock)
    conn.wake.make_scorer = Scripted
    return conn, sock, sessions


@pytest.mark.fast
def test_wake_events_out_of_order_are_answered_at_once():
    """Each step: the events sent, then what came back before the next step."""
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.wake import Detect

    fmt = {"rate": 16000, "width": 2, "channels": 1}
    steps = [
        ([Detect(names=["hey_jarvis"]), AudioStop()], ["not-detected"]),  # detect, then no audio at all
        ([AudioChunk(audio=frames(0.0, 0.9), **fmt)], ["detection"]),  # a satellite: chunks without audio-start
        ([Transcribe(language="en")], ["error"]),  # inside the wake stream: said, ignored
        ([AudioStart(**fmt)], ["error"]),  # a second audio-start: said, and a new stream starts
        ([AudioChunk(audio=frames(0.0), **fmt), AudioStop()], ["not-detected"]),
        ([AudioStop()], ["not-detected"]),  # still a wake connection: audio-stop alone is answered the same
        ([AudioStart(rate=16000, width=2, channels=9)], ["error"]),  # a bad format closes, as for speech to text
    ]

    async def go():
        conn, sock, sessions = connection()
        seen, answers = 0, []
        for events, _ in steps:
            for event in events:
                more = await conn.handle(event.event())
            got = sock.events()[seen:]
            seen += len(got)
            answers.append(([t for t, _ in got], got, more))
        conn.wake.close()
        return answers, sessions

    answers, sessions = asyncio.run(go())
    assert [a[0] for a in answers] == [want for _, want in steps]
    assert answers[1][1][0][1]["name"] == "hey_jarvis" and answers[1][1][0][1]["timestamp"] == 160
    assert "transcribe inside a wake word stream" in answers[2][1][0][1]["text"]
    assert answers[-1][2] is False and not sessions  # closed; no stream left holding a slot


@pytest.mark.fast
def test_transcribe_makes_the_connection_a_speech_to_text_one_again_and_detect_waits_for_its_stream():
    from wyoming.asr import Transcribe
    from wyoming.audio import AudioStop
    from wyoming.wake import Detect

    async def go():
        conn, sock, _ = connection()
        await conn.handle(Detect().event())
        await conn.handle(Transcribe(language="en").event())
        await conn.handle(AudioStop().event())  # transcribe with no audio: the transcript of nothing
        conn.stream = object()  # a transcription stream in progress
        await conn.handle(Detect().event())
        conn.stream = None
        return sock.events()

    got = asyncio.run(go())
    assert [t for t, _ in got] == ["transcript", "error"] and "detect inside a transcription stream" in got[1][1]["text"]


# --- real: the wyoming client against voicechat serve --wyoming -----------------------------------------------------


@pytest.fixture(scope="module")
def wyo(tmp_path_factory):
    port = free_port()
    with ServeProcess(tmp_path_factory.mktemp("wyoming-wake"), "--wyoming", f"tcp://127.0.0.1:{port}") as server:
        server.wyoming_port = port
        yield server


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def listen(server, audio: bytes, names=None, rate=16000, width=2, channels=1) -> list:
    """detect, audio-start, the audio in 1024-sample chunks (as fast as the server takes them), audio-stop; the
    events back until the pong of a ping sent last (a detection is not the end: the stream goes on)."""
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.wake import Detect

    c = AsyncTcpClient("127.0.0.1", server.wyoming_port)
    await c.connect()
    got = []

    async def read():
        while True:
            event = await c.read_event()
            if event is None:
                return
            got.append(event)
            if event.type == "pong":
                return

    reader = asyncio.create_task(read())
    try:
        await c.write_event(Detect(names=names).event())
        await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = 1024 * width * channels
        for i in range(0, len(audio), step):
            await c.write_event(AudioChunk(rate=rate, width=width, channels=channels, audio=audio[i : i + step]).event())
        await c.write_event(AudioStop().event())
        from wyoming.ping import Ping

        await c.write_event(Ping(text="end").event())  # answered after everything before it: the end of the answers
        await asyncio.wait_for(reader, 120)
    finally:
        await c.disconnect()
    return got


def silence(s: float) -> np.ndarray:
    return np.zeros(int(16000 * s), np.float32)


def test_describe_lists_the_wake_program_and_its_words(wyo):
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    async def go():
        c = AsyncTcpClient("127.0.0.1", wyo.wyoming_port)
        await c.connect()
        await c.write_event(Describe().event())
        info = Info.from_event(await c.read_event())
        await c.disconnect()
        return info

    info = asyncio.run(asyncio.wait_for(go(), 60))
    assert info.asr and info.tts  # the other programs are still there
    words = {m.name: m for m in info.wake[0].models}
    assert set(words) == {"alexa", "hey_jarvis", "hey_mycroft", "hey_rhasspy", "okay_nabu"}
    assert words["hey_jarvis"].phrase == "Hey Jarvis" and "en" in words["hey_jarvis"].languages


def test_the_wake_word_in_a_longer_stream_is_detected_each_time_where_it_was_said_and_other_speech_is_not(wyo):
    import soxr

    parts, spoken = [silence(0.5), speak("Turn on the lights in the kitchen."), silence(1.0)], []
    for request in ("What is the weather like tomorrow?", "Set a timer for ten minutes."):  # the satellite streams on
        at, word = sum(map(len, parts)), speak("Hey Jarvis.")
        spoken.append((at * 1000 // 16000, (at + len(word)) * 1000 // 16000))
        parts += [word, silence(0.7), speak(request), silence(0.5)]
    # sent as Home Assistant might: 44.1 kHz stereo, converted on the server as the speech to text path does
    at44 = soxr.resample(np.concatenate(parts), 16000, 44100).astype(np.float32)
    stereo = pcm16(np.repeat(at44[:, None], 2, axis=1).ravel())
    got = asyncio.run(listen(wyo, stereo, names=["hey_jarvis"], rate=44100, channels=2))
    detections = [e.data for e in got if e.type == "detection"]
    assert [d["name"] for d in detections] == ["hey_jarvis", "hey_jarvis"], [e.type for e in got]
    for d, (began, ended) in zip(detections, spoken, strict=True):
        assert began < d["timestamp"] <= ended + 1000  # heard after the word began, within a second of its end
    assert not [e for e in got if e.type in ("not-detected", "error")]

    other = np.concatenate([silence(0.5), speak("Turn on the lights in the kitchen. What is the weather like tomorrow?"), silence(1.0)])
    got = asyncio.run(listen(wyo, pcm16(other)))  # every word listened for
    assert [e.type for e in got] == ["not-detected", "pong"]


def test_an_unknown_wake_word_is_an_error_naming_it_and_a_vanished_satellite_frees_its_stream(wyo):
    import time

    from wyoming.audio import AudioChunk
    from wyoming.client import AsyncTcpClient
    from wyoming.wake import Detect

    got = asyncio.run(listen(wyo, pcm16(silence(0.5)), names=["computer"]))
    assert [e.type for e in got] == ["error", "not-detected", "pong"]
    assert "'computer'" in got[0].data["text"] and "hey_jarvis" in got[0].data["text"]

    def sessions_become(n: int) -> bool:
        deadline = time.monotonic() + 60
        while wyo.metric("voicechat_active_sessions") != n and time.monotonic() < deadline:
            time.sleep(0.1)
        return wyo.metric("voicechat_active_sessions") == n

    async def vanish():  # a satellite: detect, chunks without audio-start, then gone mid-stream
        c = AsyncTcpClient("127.0.0.1", wyo.wyoming_port)
        await c.connect()
        await c.write_event(Detect(names=["okay_nabu"]).event())
        for _ in range(20):
            await c.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm16(silence(0.064))).event())
        assert await asyncio.to_thread(sessions_become, 1)  # its stream holds a place among serve.max_sessions
        c._writer.transport.abort()

    asyncio.run(vanish())
    assert sessions_become(0)  # and gives it back when the satellite is gone
