"""Load the three engines and the turn model at once (each mostly waits on I/O and native code)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicechat.config import Config
    from voicechat.engines.base import ChatModel, SpeechToText, TextToSpeech
    from voicechat.engines.smart_turn import SmartTurn


def load_all(
    cfg: Config, *, also: Callable[[], None] | None = None
) -> tuple[SpeechToText, ChatModel, TextToSpeech, SmartTurn | None, str | None]:
    """(stt, llm, tts, turn_model, why the turn model is off or None). ``also`` runs alongside (other start-up work).

    The first failure is raised after every load has finished, and the engines that did load are closed.
    """
    from voicechat.engines import registry
    from voicechat.engines.smart_turn import load_turn_model

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="load") as pool:
        stt = pool.submit(registry.create, "stt", cfg, concurrent=True)
        llm = pool.submit(registry.create, "llm", cfg, concurrent=True)
        tts = pool.submit(registry.create, "tts", cfg, concurrent=True)
        turn = pool.submit(load_turn_model, cfg.turn)
        if also is not None:
            also()
        error: BaseException | None = None
        for f in (stt, llm, tts, turn):
            if f.exception() is not None:  # report the first failure after all finished
                error = error or f.exception()
    if error is not None:
        for loaded in (stt, llm, tts):
            if loaded.exception() is None:
                loaded.result().close()
        raise error
    model, why = turn.result()
    return stt.result(), llm.result(), tts.result(), model, why
