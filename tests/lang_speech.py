"""Speech in seven languages made on the spot with espeak-ng, for the language tests and bench/languages.py.

Voices are split in two: ``TUNE_VOICES`` were used to choose the identification settings
(how a turn's language is decided, the encoder window); ``HELD_OUT_VOICES`` never were, and the
figures that count are measured on them. The sentences are split the same way.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata

import numpy as np

LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl")

ESPEAK_VOICE = {"en": "en-us", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl"}
TUNE_VOICES = ("", "+m3")  # the language's own voice, and a variant
HELD_OUT_VOICES = ("+f3", "+m7", "+f2")
SPEEDS = (150, 175)  # words per minute (espeak's default is 175)

# Diphone voices for espeak-ng from the MBROLA project (Debian's mbrola-us1, mbrola-de6, ... packages, in contrib
# and non-free): speech nearer a person's than espeak-ng's own, for bench/languages.py --speech mbrola only (no
# test needs them). The first voice of each language is for tuning, the others are held out.
MBROLA_VOICES = {
    "en": ("mb-us1", "mb-us2", "mb-en1"),
    "de": ("mb-de6", "mb-de4", "mb-de2"),
    "fr": ("mb-fr1", "mb-fr4"),
    "es": ("mb-es1", "mb-es2"),
    "it": ("mb-it3", "mb-it4"),
    "pt": ("mb-br1", "mb-br3", "mb-pt1"),
    "nl": ("mb-nl2", "mb-nl3"),
}

# 1.5 to 4 s when spoken: a few words to a short sentence. The first four of each language are for tuning.
SENTENCES = {
    "en": [
        "What time is it?",
        "Turn on the kitchen lights, please.",
        "How far is it to the station?",
        "Remind me to call my sister tomorrow.",
        "What is the weather like today?",
        "Play some quiet music in the living room.",
        "How many days are left until the holidays?",
        "Tell me a short story about a dragon.",
    ],
    "de": [
        "Wie spät ist es jetzt?",
        "Mach bitte das Licht in der Küche an.",
        "Wie weit ist es bis zum Bahnhof?",
        "Erinnere mich morgen an den Termin beim Arzt.",
        "Wie wird das Wetter heute Nachmittag?",
        "Spiel bitte ruhige Musik im Wohnzimmer.",
        "Wie viele Tage sind es noch bis zu den Ferien?",
        "Erzähl mir eine kurze Geschichte über einen Drachen.",
    ],
    "fr": [
        "Quelle heure est-il maintenant?",
        "Allume la lumière de la cuisine, s'il te plaît.",
        "Combien de temps faut-il pour aller à la gare?",
        "Rappelle-moi d'appeler ma sœur demain matin.",
        "Quel temps fera-t-il cet après-midi?",
        "Mets de la musique douce dans le salon.",
        "Combien de jours reste-t-il avant les vacances?",
        "Raconte-moi une petite histoire sur un dragon.",
    ],
    "es": [
        "¿Qué hora es ahora?",
        "Enciende la luz de la cocina, por favor.",
        "¿Cuánto se tarda en llegar a la estación?",
        "Recuérdame llamar a mi hermana mañana.",
        "¿Qué tiempo hará esta tarde?",
        "Pon música tranquila en el salón.",
        "¿Cuántos días faltan para las vacaciones?",
        "Cuéntame una historia corta sobre un dragón.",
    ],
    "it": [
        "Che ore sono adesso?",
        "Accendi la luce in cucina, per favore.",
        "Quanto ci vuole per arrivare alla stazione?",
        "Ricordami di chiamare mia sorella domani.",
        "Che tempo farà oggi pomeriggio?",
        "Metti un po' di musica tranquilla in salotto.",
        "Quanti giorni mancano alle vacanze?",
        "Raccontami una breve storia su un drago.",
    ],
    "pt": [
        "Que horas são agora?",
        "Acende a luz da cozinha, por favor.",
        "Quanto tempo demora para chegar à estação?",
        "Lembra-me de ligar para a minha irmã amanhã.",
        "Como vai estar o tempo esta tarde?",
        "Põe uma música calma na sala de estar.",
        "Quantos dias faltam para as férias?",
        "Conta-me uma pequena história sobre um dragão.",
    ],
    "nl": [
        "Hoe laat is het nu?",
        "Doe alsjeblieft het licht in de keuken aan.",
        "Hoe ver is het naar het station?",
        "Herinner me eraan om morgen mijn zus te bellen.",
        "Wat voor weer wordt het vanmiddag?",
        "Speel wat rustige muziek in de woonkamer.",
        "Hoeveel dagen is het nog tot de vakantie?",
        "Vertel me een kort verhaal over een draak.",
    ],
}
TUNE_SENTENCES = 4  # SENTENCES[lang][:4] tune, the rest are held out


def available() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=512)
def _espeak(text: str, voice: str, speed: int) -> bytes:
    return subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True, timeout=60
    ).stdout


def speak(text: str, language: str, variant: str = "", speed: int = 175, sample_rate: int = 16000) -> np.ndarray:
    """espeak-ng's speech for text in language (ISO 639-1), with a voice variant ("+f3") or a whole voice
    ("mb-de6"), as float32 mono."""
    import io

    import soundfile as sf
    import soxr

    voice = variant if variant.startswith("mb-") else ESPEAK_VOICE[language] + variant
    audio, rate = sf.read(io.BytesIO(_espeak(text, voice, speed)), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, sample_rate).astype(np.float32)


def missing_mbrola() -> list[str]:
    """The MBROLA voices of MBROLA_VOICES that espeak-ng cannot speak with here (not installed)."""
    out = []
    for voices in MBROLA_VOICES.values():
        for voice in voices:
            try:
                spoken = _espeak("test", voice, 175)
            except subprocess.CalledProcessError:
                spoken = b""
            if len(spoken) < 1000:
                out.append(voice)
    return out


def trim(audio: np.ndarray, sample_rate: int = 16000, floor: float = 0.01) -> np.ndarray:
    """The audio without the silence espeak puts before and after the speech."""
    loud = np.flatnonzero(np.abs(audio) > floor)
    if not len(loud):
        return audio
    return audio[max(0, loud[0] - sample_rate // 20) : loud[-1] + sample_rate // 20]


def words(text: str) -> list[str]:
    """Words for a word error rate in any Latin-script language: lower case, accents kept, punctuation gone."""
    text = unicodedata.normalize("NFC", text.lower()).replace("’", "'")
    return re.sub(r"[^\w' ]+", " ", text.replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate on words of any script (accents kept, as these languages write them)."""
    from tests.helpers import word_edit_rate

    return word_edit_rate(words(reference), words(hypothesis))
