"""Is this speech the user, or the assistant heard back through the room?

The echo canceller removes most of the assistant's voice from the microphone, but not all of it:
while it re-converges, in loud passages and in the room's tail, a residue reaches the voice
detector and sounds like speech. Energy alone cannot tell that residue from a user speaking
softly over the reply. Its words can: the residue's transcript is made of words the assistant has
just said, while a user who cuts in says something else ("stop", "wait", a new question).

Speech that starts while the assistant talks (or just after) is transcribed once enough of it is
voiced; it counts as the user's only if enough of its telling words (not "the", "is", "what") were
not in the reply, and as the assistant's own only if at least two of them were. Speech with no
words in it yet, or only one of the reply's, is checked again as it goes on; if it ends that way,
it was not a turn.
"""

from __future__ import annotations

import difflib
import re

_WORD = re.compile(r"[a-z0-9']+")
ECHO_SHARE = 0.6  # this share of the heard words found in what the assistant said: its own voice
# words any two sentences share: they say nothing about who spoke ("what is it in ..." is in every reply)
COMMON = frozenset(
    """a an the and or but so if then of in on at to for from by with as is are was were be been am
it its it's this that these those there here i you he she we they me him her us them my your our their what which who
whom whose when where why how not no do does did done have has had can could will would shall should may might must
just very too also up down out over into about than all any some one""".split()
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def known_word(word: str, said: set[str]) -> bool:
    """``word`` is one of ``said``, or close to one (a long word misheard: "dragging" for "dragon")."""
    if word in said:
        return True
    if len(word) < 4:
        return False
    return bool(difflib.get_close_matches(word, said, n=1, cutoff=0.75))  # "dragging" heard for "dragon"


OWN, USER, UNSURE = "own voice", "user", "unsure"
# what people say to cut a speaker short, alone: a short word that stopped as the reply paused is the user's
# when it is one of these (and not in the reply); other short bursts are taken for the reply's echo
STOP_WORDS = frozenset("stop wait hold pause enough quiet cancel hang shush shut".split())


# what may come with a stop word in such an interjection ("Hold on.", "Okay, stop.", "Wait a second.", "Stop it.",
# "Stop talking.", "Wait for me.", "Be quiet, please.")
WITH_STOP = frozenset(
    """on please a second sec minute moment ok okay hey no now just up and oh yeah yes so um uh
it that there right for me be talking sorry thanks thank you""".split()
)
STOP_MAX_WORDS = 6  # the longest such interjection: "Okay, stop, wait a second."


def is_stop(heard: str, said: str) -> bool:
    """A short interjection such as "Stop." or "Hold on", which the reply did not just say: a stop word and
    nothing else but the words that go with one (a garbled echo heard as "I don't wait." is not one), in a short
    burst ("Stop. Wait a moment." is one)."""
    got = words(heard)
    said_words = set(words(said))
    return (
        0 < len(got) <= STOP_MAX_WORDS
        and any(w in STOP_WORDS and w not in said_words for w in got)
        and all(w in STOP_WORDS or w in WITH_STOP for w in got)
    )


def verdict(heard: str, said: str) -> str:
    """Whose speech is ``heard`` (a transcript of speech over the reply), given the assistant's ``said`` text:
    OWN when mostly the reply's own telling words come back (two at least), USER when they are other words,
    UNSURE when there are no words yet (noise, or a voice the canceller has suppressed most of) or a single
    word of the reply's: listen to more."""
    got = words(heard)
    if not got:
        return UNSURE
    said_words = set(words(said))
    if not said_words:
        return USER
    telling = [w for w in got if w not in COMMON]
    if not telling:  # "What is it?": words every reply has say nothing of who spoke (the rig heard a user so)
        return UNSURE
    known = sum(known_word(w, said_words) for w in telling)
    if known < ECHO_SHARE * len(telling):
        return USER
    return OWN if known >= 2 else UNSURE  # one word of the reply's ("time" in "what time is it") proves nothing yet
