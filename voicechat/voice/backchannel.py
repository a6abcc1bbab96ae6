"""Backchannels: what a listener says over a speaker to mean "go on" ("uh-huh", "yeah", "right", "I see").

Said over a reply, they do not stop it and are not a turn (voice.barge). A transcript is a backchannel when
all of its words, read in order, are phrases of the list ("Yeah, yeah.", "Okay, I see." are), at most
``MAX_WORDS`` of them; a stop word anywhere makes it something else ("Okay, stop." stops the reply).

Whisper spells these sounds many ways ("Uh-huh.", "uh huh", "Mhm.", "Mm-hmm", "Mmm", "Hmm."), so words are
compared with hyphens read as spaces and each run of one letter read once ("mmm" is "mm" is "m", "hmmm" is
"hmm"); what it puts in brackets ("[coughs]", "(laughs)") is not words. The English list is the default
(config ``barge.backchannels``); each language in ``listen.languages`` adds its own small list below.

Over a loudspeaker's echo, Whisper often hears a word or two of the reply with the backchannel ("of. Yeah.",
"Uh-huh, Paris."): given what the reply said lately, up to ``ECHO_WORDS`` of its words at either end are not counted
(never a stop word: "Stop. Okay." stops it even when the reply said "stop").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from voicechat.voice.self_echo import STOP_WORDS, known_word

# (config barge.backchannels; "no" is not one: it disagrees, and usually comes before more words)
ENGLISH = (
    "uh-huh",
    "mm-hmm",
    "mhm",
    "mm",
    "hmm",
    "uh",
    "um",
    "oh",
    "ah",
    "yeah",
    "yep",
    "yup",
    "yes",
    "right",
    "okay",
    "ok",
    "I see",
    "sure",
    "alright",
    "all right",
    "got it",
    "exactly",
)
# a few per language, added when the language is declared (listen.languages)
LANGUAGES: dict[str, tuple[str, ...]] = {
    "de": ("ja", "genau", "mhm", "aha", "okay", "stimmt", "richtig", "klar", "ach so"),
    "fr": ("oui", "ouais", "d'accord", "mhm", "ok", "ah bon", "je vois", "voilà", "c'est ça"),
    "es": ("sí", "vale", "claro", "ajá", "ya", "mhm", "ok", "exacto"),
    "it": ("sì", "certo", "giusto", "ok", "mhm", "ah", "esatto", "capito"),
    "pt": ("sim", "certo", "tá", "uhum", "mhm", "ok", "claro", "entendi"),
    "nl": ("ja", "oké", "klopt", "precies", "mhm", "aha"),
}
MAX_WORDS = 6  # "Okay, yeah, I see." is one; a longer run of them is someone talking
ECHO_WORDS = 2  # words of the reply's own heard with a backchannel over its echo, at either end, that do not count

_NOT_WORDS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*")  # [coughs], (laughs), *sighs*
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text`` as they are compared: lower case, hyphens as spaces, letter runs read once."""
    text = _NOT_WORDS.sub(" ", text.lower().replace("\u2019", "'"))
    return [re.sub(r"(.)\1+", r"\1", w) for w in _WORD.findall(text)]


class Backchannels:
    """A list of backchannel phrases, and whether a transcript is one of them."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases = [p for p in dict.fromkeys(str(p).strip() for p in phrases) if p]
        self._known = {tuple(w) for w in (words(p) for p in self.phrases) if w}
        self._longest = max((len(k) for k in self._known), default=0)

    @classmethod
    def for_languages(cls, phrases: Iterable[str], languages: Iterable[str]) -> Backchannels:
        """``phrases`` (the configured list) plus the built-in ones of each language (ISO 639-1, "de" or "de-AT")."""
        extra = [p for code in languages for p in LANGUAGES.get(str(code).split("-")[0].split("_")[0].lower(), ())]
        return cls([*phrases, *extra])

    def no_words(self, heard: str) -> bool:
        """Nothing in it is a word (a cough, a door, Whisper's "[coughs]")."""
        return not words(heard)

    def match(self, heard: str, said: str = "") -> bool:
        """``heard`` is made of backchannel phrases only (and has words). ``said``: what the reply said lately;
        words of it at either end of ``heard`` (up to ``ECHO_WORDS`` each, no stop word) are its echo, not counted."""
        got = words(heard)
        if self._phrases_only(got):
            return True
        reply = set(words(said))
        if not reply:
            return False

        def echo(edge: list[str]) -> bool:
            return all(w not in STOP_WORDS and known_word(w, reply) for w in edge)

        for lead in range(min(ECHO_WORDS, len(got) - 1) + 1):
            if not echo(got[:lead]):
                break
            for trail in range(min(ECHO_WORDS, len(got) - 1 - lead) + 1):
                if (lead or trail) and echo(got[len(got) - trail :]) and self._phrases_only(got[lead : len(got) - trail]):
                    return True
        return False

    def _phrases_only(self, got: list[str]) -> bool:
        """``got`` (words) splits into known phrases, and is no longer than ``MAX_WORDS``."""
        if not got or len(got) > MAX_WORDS:
            return False
        ok = [True] + [False] * len(got)  # ok[i]: the first i words split into known phrases
        for i in range(len(got)):
            if not ok[i]:
                continue
            for n in range(1, min(self._longest, len(got) - i) + 1):
                if tuple(got[i : i + n]) in self._known:
                    ok[i + n] = True
        return ok[-1]
