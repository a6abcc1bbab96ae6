"""The languages voicechat answers in: names, the line that asks for a reply in a language, the words a
sentence in progress ends on (for the end of a turn), and a small offline guess of a typed text's language
among the few languages the user declared.

Codes are ISO 639-1 ("de"), the codes Whisper reports; a regional tag ("pt-BR", "en_US") counts as its
language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "ru": "Russian",
    "uk": "Ukrainian",
    "sv": "Swedish",
    "da": "Danish",
    "no": "Norwegian",
    "nb": "Norwegian",
    "fi": "Finnish",
    "cs": "Czech",
    "tr": "Turkish",
    "el": "Greek",
    "hu": "Hungarian",
    "ro": "Romanian",
    "ca": "Catalan",
    "ar": "Arabic",
    "hi": "Hindi",
    "ja": "Japanese",
    "zh": "Chinese",
    "ko": "Korean",
}

# The line added to the system prompt for a turn in that language, written in the language itself (small
# models follow an instruction in the language they are to use far better than "Answer in German.").
PROMPTS = {
    "en": "Always answer in English.",
    "de": "Antworte immer auf Deutsch.",
    "fr": "Réponds toujours en français.",
    "es": "Responde siempre en español.",
    "it": "Rispondi sempre in italiano.",
    "pt": "Responda sempre em português.",
    "nl": "Antwoord altijd in het Nederlands.",
    "pl": "Zawsze odpowiadaj po polsku.",
    "ru": "Всегда отвечай по-русски.",
    "uk": "Завжди відповідай українською.",
    "sv": "Svara alltid på svenska.",
    "da": "Svar altid på dansk.",
    "no": "Svar alltid på norsk.",
    "nb": "Svar alltid på norsk.",
    "fi": "Vastaa aina suomeksi.",
    "cs": "Vždy odpovídej česky.",
    "tr": "Her zaman Türkçe cevap ver.",
    "el": "Απάντα πάντα στα ελληνικά.",
    "ja": "常に日本語で答えてください。",
    "zh": "请始终用中文回答。",
    "ko": "항상 한국어로 대답하세요.",
}

# The default tools.filler ("Let me look that up.", said over a slow tool call) in each language.
FILLERS = {
    "de": "Einen Moment, ich schaue nach.",
    "fr": "Un instant, je regarde.",
    "es": "Un momento, lo busco.",
    "it": "Un momento, controllo.",
    "pt": "Um momento, vou verificar.",
    "nl": "Een moment, ik zoek het op.",
}
DEFAULT_FILLER = "Let me look that up."

# Words a finished sentence almost never ends on: conjunctions, prepositions, articles, fillers. A transcript
# ending on one is a thought in progress. Words that also end sentences are left out on purpose: German and
# Dutch separable prefixes ("Mach das Licht an", "Ik bel je op"), pronouns ("Ich weiß das", "Ik weet het"),
# Dutch stranded prepositions ("Daar hou ik van"), Italian and Portuguese possessives ("È mio").
TRAILING: dict[str, frozenset[str]] = {
    "en": frozenset(
        """
and but or nor because cause if then that which who whose whom where when while although though unless until
since as than to of for from with without within in on at by about into onto upon over under between through
during before after against toward towards like the a an my your his her its our their this these those some any
every each um uh er erm hmm mm uhm ah eh well also just plus versus via i i'm i'd i'll i've we're you're
let's what's how's where's there's it's
""".split()
    ),
    "de": frozenset(
        """
und aber oder denn weil wenn dass ob als wie sondern obwohl damit bevor nachdem während sobald falls sowie
von für im am ins zum zur beim vom bei über unter hinter neben zwischen gegen ohne wegen trotz seit
der die den dem des eine einen einem einer eines mein meine meinen meinem meiner dein deine deinen unsere euer eure
ich du wir äh ähm öhm hm hmm mhm
""".split()
    ),
    "fr": frozenset(
        """
et mais ou car que qu qui parce puisque quand lorsque si comme pour avec sans dans sur sous chez par vers entre
de du des d au aux à le la les l un une mon ma mes ton ta tes son sa ses notre nos votre vos leurs ce cet cette ces
je j tu il ils on euh heu ben bah hum
""".split()
    ),
    "es": frozenset(
        """
y e o u pero porque que si cuando como aunque mientras para por con sin en de del a al sobre entre hacia hasta desde
el la los las un una unos unas mi mis tu tus su sus nuestro nuestra nuestros nuestras eh em emm mmm
""".split()
    ),
    "it": frozenset(
        """
e ed o oppure ma però perché che se quando come mentre sebbene per con senza in di da a su tra fra
del della dei degli delle dello al alla ai agli alle allo dal dalla dai nel nella nei sul sulla
il lo la i gli le un uno una quel quella ehm eh mmm
""".split()
    ),
    "pt": frozenset(
        """
e ou mas porque que se quando como embora enquanto para pra por com sem em de do da dos das no na nos nas
ao aos à às o os as um uma uns umas num numa pelo pela pelos pelas eh hum ahn
""".split()
    ),
    "nl": frozenset(
        """
en maar of want omdat als wanneer terwijl hoewel zodat met zonder tot tussen naar
de een mijn jouw uw hun ik we wij jij uh eh ehm
""".split()
    ),
}

# The most frequent function words of each language: the evidence a typed text gives of its language.
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        """
the a an and or but of to in on at for with from by is are was were be been am do does did have has had
i you he she it we they me my your his her our their this that these those what which who how why where when
not no yes can will would should could there here some any all very just so if then than as about please tell
""".split()
    ),
    "de": frozenset(
        """
der die das den dem des ein eine einen einem einer und oder aber nicht ist sind war waren bin bist hat haben habe
ich du er sie es wir ihr mich mir dich dir uns euch mein meine dein deine sein seine ihre unser
mit von zu zum zur im am auf für bei nach aus über unter vor wie was wer wo warum wann welche welcher
auch noch nur schon sehr kann kannst können will wird werden wurde dass wenn weil ja nein bitte heute gibt gut
""".split()
    ),
    "fr": frozenset(
        """
le la les l un une des du de d et ou mais est sont était suis es sommes êtes ont ai as avons avez a
je j tu il elle nous vous ils elles on me m te t se s moi toi lui leur mon ma mes ton ta tes son sa ses notre
ce cet cette ces qui que qu quoi où comment pourquoi quand quel quelle avec pour dans sur par pas ne n plus
très bien aussi oui non merci bonjour peux peut veux fait faire c y en à au aux est-ce
""".split()
    ),
    "es": frozenset(
        """
el la los las un una unos unas y o pero de del al es son era fue soy eres somos está están estoy
yo tú usted él ella nosotros ellos me te se nos le les mi mis tu tus su sus qué que quién cómo dónde
cuándo por para con sin en muy también sí no gracias hola puedes puede hay hace hoy esto este esta eso
""".split()
    ),
    "it": frozenset(
        """
il lo la i gli le un uno una e ed o ma di del della dei delle da dal dalla in nel nella su sul per con
è sono ero era sei siamo ho hai ha abbiamo avete hanno io tu lui lei noi voi loro mi ti ci si vi
che chi cosa come dove perché quando quale questo questa quello non sì anche molto più ciao grazie
puoi può oggi c è
""".split()
    ),
    "pt": frozenset(
        """
o a os as um uma uns umas e ou mas de do da dos das no na nos nas em ao à pelo pela por para com sem
é são era foi sou somos está estão estou eu tu você ele ela nós eles elas me te se lhe meu minha
seu sua que quem como onde porque quando qual isso isto este esta não sim também muito mais olá obrigado
obrigada pode hoje há tem
""".split()
    ),
    "nl": frozenset(
        """
de het een en of maar van in op te aan met voor door bij naar uit over om tot is zijn was waren ben bent
heb hebt heeft hebben ik jij je u hij zij ze wij we jullie mij me mijn jouw zijn haar ons onze hun
dat dit die wat wie hoe waar waarom wanneer welke niet geen wel ook nog al heel er kan kun wil zal
ja nee dank bedankt hallo graag vandaag
""".split()
    ),
}

# Letters that only some languages write: each occurrence is a little evidence for them, shared among the
# languages (of those considered) that write it.
LETTERS = {
    "de": "äöüß",
    "fr": "éèêàçùâîôûëïœ",
    "es": "ñ¿¡áéíóú",
    "it": "àèéìòù",
    "pt": "ãõçáâêôàéíóú",
    "nl": "ëïé",
}

# Word endings typical of a language (of content words, which function words do not cover): weaker evidence.
ENDINGS = {
    "en": ("ing", "tion", "ed", "ly", "ness", "ble", "ity"),
    "de": ("ung", "keit", "heit", "lich", "isch", "chen", "ten", "gen", "ern"),
    "fr": ("tion", "ment", "eur", "eux", "ais", "ait", "ée", "ées", "és", "er", "ité", "ble"),
    "es": ("ción", "ado", "ada", "ido", "ida", "ando", "mente", "dad", "os", "as"),
    "it": ("zione", "zioni", "ato", "ata", "are", "ere", "ire", "mente", "ità", "li", "ti", "ni"),
    "pt": ("ção", "ções", "ado", "ada", "ido", "ar", "mente", "agem", "dade", "os", "as"),
    "nl": ("ij", "heid", "lijk", "en", "isch", "aar", "ing"),
}

# Scripts that name a language (or a few) on their own.
SCRIPTS: list[tuple[str, tuple[str, ...]]] = [
    (r"[\u3040-\u30ff]", ("ja",)),  # kana: Japanese (before Han, which Japanese writes too)
    (r"[\uac00-\ud7af]", ("ko",)),
    (r"[\u4e00-\u9fff]", ("zh", "ja")),
    (r"[іїєґ]", ("uk",)),
    (r"[\u0400-\u04ff]", ("ru", "uk")),
    (r"[\u0370-\u03ff]", ("el",)),
    (r"[\u0600-\u06ff]", ("ar",)),
    (r"[\u0900-\u097f]", ("hi",)),
]

_WORD = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*")
_ELIDED = frozenset("l d j m t s n c qu jusqu lorsqu puisqu quoiqu dell all nell sull dall coll".split())  # French, Italian


def base(code: str | None) -> str | None:
    """A language code without its region, lower case ("pt-BR" -> "pt"); None stays None."""
    if not code:
        return None
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0] or None


def name(code: str | None) -> str:
    """The language's English name ("de" -> "German"), or its code when it has none here."""
    b = base(code) or "?"
    return NAMES.get(b, b)


def prompt_line(code: str | None, overrides: Mapping[str, str] | None = None) -> str | None:
    """The system prompt line that asks for a reply in this language (llm.language_prompts first); None for none."""
    b = base(code)
    if b is None:
        return None
    for key, line in (overrides or {}).items():
        if base(str(key)) == b:
            return str(line).strip() or None  # an empty override: ask for nothing
    if b in PROMPTS:
        return PROMPTS[b]
    return f"Always answer in {NAMES[b]}." if b in NAMES else f"Always answer in the language whose ISO 639-1 code is '{b}'."


def with_prompt_line(system_prompt: str, language: str | None, declared: list[str], overrides: Mapping[str, str] | None = None) -> str:
    """The system prompt for a turn in ``language``: its line after the prompt (after it, so a local model's
    cache of the prompt stays valid). An English turn of a session that declared no other language keeps
    the prompt as it is."""
    code = base(language)
    if code is None or (code == "en" and all(base(d) == "en" for d in declared)):
        return system_prompt
    line = prompt_line(code, overrides)
    return f"{system_prompt}\n\n{line}".strip() if line else system_prompt


def turn_language(text: str, declared: list[str], last: str | None = None) -> str | None:
    """A typed turn's language: the only one declared, else a guess from its words among those declared, else
    the last turn's; None when no language is declared (nothing to choose among)."""
    codes = [c for c in dict.fromkeys(base(d) for d in declared) if c]
    if len(codes) == 1:
        return codes[0]
    if not codes:
        return None
    return detect(text, codes) or last


def filler(configured: str, language: str | None) -> str:
    """The line said over a slow tool call in a reply in ``language``: the configured one, translated when it is
    the default and a translation is known."""
    if configured.strip() == DEFAULT_FILLER:
        return FILLERS.get(base(language) or "", configured)
    return configured


def words(text: str) -> list[str]:
    """The words of a text, lower case (elisions such as "qu'il" split at the apostrophe; "prends-le" stays whole)."""
    out = []
    for w in _WORD.findall(text.lower().replace("\u2019", "'")):
        head, apostrophe, tail = w.partition("'")
        if apostrophe and head in _ELIDED:
            out += [head, tail]
        else:
            out.append(w)
    return out


def trailing_words(code: str | None) -> frozenset[str] | None:
    """The words a sentence in progress ends on, in this language; None: no word rules for it (the end of a
    turn then goes by punctuation and the models only)."""
    return TRAILING.get(base(code) or "")


def detect(text: str, candidates: Iterable[str] | None = None) -> str | None:
    """The language of a text among ``candidates`` (all languages known here when None or empty), by its
    script, its function words and its letters; None when the text gives no evidence, or two languages tie."""
    cands = [b for b in dict.fromkeys(base(c) for c in (candidates or [])) if b]
    pool = cands or sorted(set(STOP_WORDS) | {lang for _, langs in SCRIPTS for lang in langs})
    for pattern, langs in SCRIPTS:
        if re.search(pattern, text):
            hits = [lang for lang in langs if lang in pool]
            if hits:
                return hits[0]
    scores = dict.fromkeys(pool, 0.0)
    for w in [p for word in words(text) for p in ([word, *word.split("-")] if "-" in word else [word])]:  # ("fait-il": "fait", "il")
        holders = [lang for lang in pool if w in STOP_WORDS.get(lang, ())]
        for lang in holders:
            scores[lang] += 1.0 / len(holders)  # a word many languages share says little
    for w in words(text):
        if len(w) >= 5:
            holders = [lang for lang in pool if w.endswith(ENDINGS.get(lang, ()))]
            for lang in holders:
                scores[lang] += 0.3 / len(holders)
    seen = 0
    for ch in text.lower():
        holders = [lang for lang in pool if ch in LETTERS.get(lang, "")]
        if holders and seen < 6:
            seen += 1
            for lang in holders:
                scores[lang] += 0.5 / len(holders)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    if not ranked or ranked[0][1] <= 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


def espeak_voice(code: str | None, table: Iterable[tuple[str, str]]) -> str | None:
    """espeak-ng's voice for a language, from its voices table ((language code, voice name) rows): the exact
    code, else the language's main country ("fr" -> "fr-fr"), else its first variant; None: no voice."""
    b = base(code)
    if b is None:
        return None
    codes = [c.lower() for c, _ in table]
    preferred = {"en": "en-us", "zh": "cmn", "no": "nb", "pt": "pt"}.get(b)
    for want in (preferred, b, f"{b}-{b}"):
        if want and want in codes:
            return want
    return next((c for c in codes if c.startswith(b + "-")), None)
