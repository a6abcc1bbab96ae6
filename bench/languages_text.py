"""Benchmark: how often voicechat.languages.detect names a typed text's language, among the declared ones.

Texts nobody wrote for it: the translated messages of the programs installed on this machine (gettext
catalogues under /usr/share/locale: each message's English original and its German, French, Spanish,
Italian, Portuguese and Dutch translation), 4 to 25 words each, up to --per messages per language; and
the spoken-style questions of tests/lang_speech.py (8 a language, written for the speech tests). For each
declared set it prints, per language, the share named right, the share left undecided (None: the
caller then keeps the last turn's language) and the share named wrong.

    python bench/languages_text.py [--sets en,de,fr en,de,fr,es,it,pt,nl] [--per 1000]
"""

from __future__ import annotations

import argparse
import gettext
import glob
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicechat import languages

LOCALES = {"de": ["de"], "fr": ["fr"], "es": ["es"], "it": ["it"], "pt": ["pt", "pt_BR"], "nl": ["nl"]}


def messages() -> dict[str, list[str]]:
    """Messages by language: the translations, and the English originals they came from."""
    found: dict[str, list[str]] = defaultdict(list)
    for lang, dirs in LOCALES.items():
        for d in dirs:
            for path in sorted(glob.glob(f"/usr/share/locale/{d}/LC_MESSAGES/*.mo")):
                try:
                    with open(path, "rb") as f:
                        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
                except Exception:
                    continue
                for original, translated in catalog.items():
                    if isinstance(original, tuple):
                        continue
                    for text, code in ((translated, lang), (original, "en")):
                        text = " ".join(re.sub(r"%\S+|\{[^}]*\}|[_&]|\\n", " ", text).split())
                        if 4 <= len(text.split()) <= 25 and "/" not in text:
                            found[code].append(text)
    return {code: list(dict.fromkeys(texts)) for code, texts in found.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["en,de,fr", "en,de,fr,es,it,pt,nl"])
    ap.add_argument("--per", type=int, default=1000)
    args = ap.parse_args()
    texts = messages()
    from tests.lang_speech import SENTENCES

    for spec in args.sets:
        declared = spec.split(",")
        got = {lang: sum(languages.detect(t, declared) == lang for t in SENTENCES.get(lang, [])) for lang in declared}
        print(f"questions, declared {spec}: " + ", ".join(f"{lang} {got[lang]}/{len(SENTENCES.get(lang, []))}" for lang in declared))
    rng = random.Random(1)
    for key in texts:
        rng.shuffle(texts[key])
    for spec in args.sets:
        declared = spec.split(",")
        took, n = 0.0, 0
        rows = []
        for lang in declared:
            sample = texts.get(lang, [])[: args.per]
            right = undecided = wrong = 0
            for text in sample:
                t0 = time.perf_counter()
                got = languages.detect(text, declared)
                took += time.perf_counter() - t0
                n += 1
                right += got == lang
                undecided += got is None
                wrong += got not in (lang, None)
            total = max(1, len(sample))
            rows.append(f"{lang} {right / total:.1%} right, {undecided / total:.1%} undecided, {wrong / total:.1%} wrong (n={len(sample)})")
        print(f"declared {spec}: " + "; ".join(rows) + f"; {1e6 * took / max(1, n):.0f} µs a text")


if __name__ == "__main__":
    main()
