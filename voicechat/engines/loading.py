"""Load the three engines and the turn model at once (each mostly waits on I/O and native code)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from voicechat.config import Config


def load_all(cfg: "Config", *, also: Callable[[], None] | None = None) -> tuple[Any, Any, Any, Any, str | None]:
    """(stt, llm, tts, turn_model, why the turn model is off or None). ``also`` runs alongside (other start-up work).

    The first failure is raised after every load has finished, and the engines that did load are closed.
    """
    from voicechat.engines import registry
    from voicechat.engines.smart_turn import load_turn_model

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="load") as pool:
        futures = [pool.submit(registry.create, kind, cfg, concurrent=True) for kind in ("stt", "llm", "tts")]
        turn = pool.submit(load_turn_model, cfg.turn)
        if also is not None:
            also()
        results: list[Any] = []
        error: BaseException | None = None
        for f in [*futures, turn]:
            try:
                results.append(f.result())
            except Exception as e:  # report the first failure after all finished
                results.append(None)
                error = error or e
    if error is not None:
        for r in results[:3]:
            if r is not None:
                r.close()
        raise error
    model, why = results[3]
    return results[0], results[1], results[2], model, why
