"""`models list --recommended`: the models that fit this machine for a live conversation, and why.

A live conversation holds all three models in memory at once and has to keep up with speech:
  - speech to text: a turn of a few seconds transcribed in about a second (real-time factor <= 0.35);
  - chat: at least 10 tokens a second (speech is ~3-4 tokens a second; the first sentence must come soon);
  - voice: synthesis at a real-time factor <= 0.25 for the better "high" voices, else "medium".

Speeds are measured only for the bundled models (entries.MEASURED); the rest are estimates scaled
from those, and said to be: Whisper by parameter count (the encoder dominates on CPU), GGUF chat
models by file size (generation on a CPU reads every weight once per token, so it is bound by memory
bandwidth), Piper voices by file size. More cores divide the time (up to 4 threads for llama.cpp).
With a CUDA GPU, Whisper and the chat model run there and the largest that fit its memory are chosen.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from voicechat.catalogue import entries

WHISPER_TINY_RTF = 0.15  # tiny.en int8 beam 5 on 2 cores, 8-10 s clips (measured)
SMOLLM2_TOKS = 115.0  # SmolLM2-135M Q4_1, 98 MB, 2 threads (measured)
SMOLLM2_MB = 98
PIPER_MEDIUM_RTF = 0.18  # en_US-joe-medium, 63 MB (measured)
PIPER_MEDIUM_MB = 63
MAX_STT_RTF = 0.35
MIN_TOKS = 10.0
MAX_TTS_RTF = 0.25
OVERHEAD_MB = 600  # voicechat itself, audio buffers, onnxruntime and CTranslate2 runtimes


@dataclass
class Machine:
    ram_total_mb: int
    ram_available_mb: int
    cores: int
    gpu: str | None = None
    gpu_memory_mb: int = 0


@dataclass
class Pick:
    kind: str
    name: str
    status: str  # bundled | installed | to pull
    why: str
    size_mb: int
    memory_mb: int
    estimate: str
    alternatives: list[str] = field(default_factory=list)


def machine() -> Machine:
    total = available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) // 1024 for line in f if line.split()[1:2]}
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        try:
            total = available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
        except (ValueError, OSError, AttributeError):
            total = available = 4096
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    gpu, gpu_mb = _gpu()
    return Machine(total, available, cores, gpu, gpu_mb)


def _gpu() -> tuple[str | None, int]:
    """A CUDA GPU that CTranslate2 sees, its name and memory (nvidia-smi), or (None, 0)."""
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() < 1:
            return None, 0
    except Exception:
        return None, 0
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10
            )
            name, mb = out.stdout.splitlines()[0].rsplit(",", 1)
            return name.strip(), int(float(mb))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return "CUDA GPU", 4096


def whisper_rtf(entry: entries.Entry, cores: int) -> float:
    return WHISPER_TINY_RTF * (entry.params_m / 39) * (2 / max(1, cores))


def chat_toks(entry: entries.Entry, cores: int) -> float:
    return SMOLLM2_TOKS * (SMOLLM2_MB / max(1, entry.size_mb)) * (min(4, max(1, cores)) / 2)


def piper_rtf(entry: entries.Entry, cores: int) -> float:
    return PIPER_MEDIUM_RTF * (entry.size_mb / PIPER_MEDIUM_MB) * (2 / max(1, cores))


def _status(entry: entries.Entry, installed: set[str]) -> str:
    if entry.bundled:
        return "bundled"
    return "installed" if entry.name in installed else "to pull"


def recommend(m: Machine, language: str | None, installed: set[str]) -> dict[str, Any]:
    lang = (language or "en").replace("-", "_")
    english = lang.split("_")[0].lower() == "en"
    budget = max(512, m.ram_available_mb - 1024 - OVERHEAD_MB)  # leave 1 GB to the rest of the machine
    gpu = m.gpu is not None

    # speech to text
    stt_pool = [e for e in entries.WHISPER if e.speaks(lang) and (english or e.languages == ("*",)) and e.name != "large-v2"]
    if english:
        stt_pool = [e for e in stt_pool if e.languages == ("en",) or e.name == "large-v3-turbo"]
    if gpu:
        fits = [e for e in stt_pool if e.memory_mb <= m.gpu_memory_mb * 0.4]
        stt = max(fits, key=lambda e: e.params_m) if fits else stt_pool[0]
        stt_est = "on the GPU"
        stt_why = f"{m.gpu} ({m.gpu_memory_mb} MB): the largest Whisper that leaves room for the chat model"
    else:
        fast = [e for e in stt_pool if whisper_rtf(e, m.cores) <= MAX_STT_RTF and e.memory_mb <= budget / 3]
        stt = max(fast, key=lambda e: e.params_m) if fast else min(stt_pool, key=lambda e: e.params_m)
        stt_est = f"estimated RTF {whisper_rtf(stt, m.cores):.2f} (measured tiny.en {WHISPER_TINY_RTF} on 2 cores x {stt.params_m}M/39M parameters x 2/{m.cores} cores)"
        slower = [e.name for e in stt_pool if e.params_m > stt.params_m]
        stt_why = (
            f"the largest {'English' if english else 'multilingual'} Whisper transcribing a turn at RTF <= {MAX_STT_RTF} on {m.cores} cores"
            + (f"; {slower[0]} would take longer than the turn allows" if slower else "")
        )

    # voice
    voices = [e for e in entries.voices() if e.speaks(lang)]
    tts_why = ""
    if not voices:
        voices = [e for e in entries.voices() if e.name == "en_US-joe-medium"]
        tts_why = f"no Piper voice speaks '{lang}' (espeak-ng may: `voicechat models list --kind tts --language {lang}`); "
    home = lang if "_" in lang else {"en": "en_US"}.get(lang.lower(), f"{lang.lower()}_{lang.upper()}")
    exact = [e for e in voices if e.languages[0].lower() == home.lower()] or voices

    def order(e: entries.Entry) -> tuple:
        return (not e.bundled, e.name not in installed, "speakers" in e.notes, e.name)

    high_ok = sorted((e for e in exact if e.quality == "high" and piper_rtf(e, m.cores) <= MAX_TTS_RTF), key=order)
    medium = sorted([e for e in exact if e.quality == "medium"] or exact, key=order)
    tts = high_ok[0] if high_ok else medium[0]
    tts_est = f"estimated RTF {piper_rtf(tts, m.cores):.2f} (measured {PIPER_MEDIUM_RTF} for a {PIPER_MEDIUM_MB} MB voice on 2 cores, scaled by size and cores)"
    tts_why += (
        "a high-quality voice keeps up here"
        if high_ok
        else f"medium quality: a high voice would be slower than RTF {MAX_TTS_RTF} on {m.cores} cores"
    )

    # chat model
    room = (m.gpu_memory_mb - stt.memory_mb) if gpu else budget - stt.memory_mb - tts.memory_mb
    chat_pool = [e for e in entries.CHAT if english and e.speaks("en") or e.speaks(lang)]
    rank = {"very good": 3, "good": 2, "fair": 1}
    if gpu:
        ok = [e for e in chat_pool if e.memory_mb <= room]
        llm_est = "on the GPU (all layers offloaded)"
        llm_why = f"the best tool caller that fits the GPU's memory beside Whisper ({max(0, room)} MB)"
    else:
        ok = [e for e in chat_pool if e.memory_mb <= room and chat_toks(e, m.cores) >= MIN_TOKS]
        llm_why = f"the best tool caller that generates >= {MIN_TOKS:.0f} tokens/s on {m.cores} cores and fits the memory left ({max(0, room)} MB)"
    llm = max(ok, key=lambda e: (next((v for k, v in rank.items() if e.tools.startswith(k)), 0), e.size_mb)) if ok else entries.CHAT[0]
    if not ok:
        llm_why = "nothing better fits this machine's memory and speed; for better answers use an OpenAI-compatible server (--llm openai)"
    if not gpu:
        llm_est = (
            f"estimated {chat_toks(llm, m.cores):.0f} tokens/s (measured {SMOLLM2_TOKS:.0f} for the {SMOLLM2_MB} MB SmolLM2 "
            f"with 2 threads, scaled by file size and threads)"
        )
    if llm.licence not in ("Apache-2.0", "MIT"):
        llm_why += f"; mind its licence: {llm.licence}"
    bigger = [e.name for e in chat_pool if e.size_mb > llm.size_mb and e.memory_mb <= room][:2]

    picks = [
        Pick("stt", stt.name, _status(stt, installed), stt_why, stt.size_mb, stt.memory_mb, stt_est),
        Pick("llm", llm.name, _status(llm, installed), llm_why, llm.size_mb, llm.memory_mb, llm_est, bigger),
        Pick("tts", tts.name, _status(tts, installed), tts_why, tts.size_mb, tts.memory_mb, tts_est),
    ]
    return {"machine": asdict(m), "language": lang, "memory_budget_mb": budget, "picks": [asdict(p) for p in picks]}
