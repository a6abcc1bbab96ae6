"""The bounded pool that every request's engine work goes through.

At most ``max_active`` jobs run (each on a worker thread, never on the event loop) and at most
``max_queued`` wait; a request past that is refused at once with 503 and Retry-After instead of
joining an unbounded queue. Jobs that stream (a chat reply, speech) keep their slot until their
stream ends or their client leaves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every slot is taken and the queue is full."""

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__("the server is busy; try again shortly")
        self.retry_after = retry_after


class TimedOut(Exception):
    """A request ran longer than the server allows (serve.request_timeout_s)."""


class Admission:
    def __init__(self, max_active: int, max_queued: int, timeout: float | None = None) -> None:
        self.max_active, self.max_queued = max_active, max_queued
        self.timeout = timeout  # the longest one job may take, waiting included
        self._slots = asyncio.Semaphore(max_active)
        self.active = 0
        self.waiting = 0
        self.pool = ThreadPoolExecutor(max_workers=max_active + 2, thread_name_prefix="engine")

    def _admit(self) -> None:
        if self.active >= self.max_active and self.waiting >= self.max_queued:
            raise Busy()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn on a worker thread once a slot is free."""
        self._admit()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            job = asyncio.get_running_loop().run_in_executor(self.pool, fn)
            try:
                return await asyncio.wait_for(asyncio.shield(job), self.timeout)
            except asyncio.TimeoutError:
                raise TimedOut() from None
        finally:
            self.active -= 1
            self._slots.release()

    async def stream(self, make: Callable[[threading.Event], Iterator[T]], *, ahead: int = 8) -> AsyncGenerator[T, None]:
        """Items of a blocking generator, produced on a worker thread under one slot.

        ``make(cancel)`` builds the generator; the worker stops between items once ``cancel`` is set,
        which happens when the consumer stops early (the client went away): the engine's generator is
        closed, so the model stops writing and synthesis stops.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self._admit()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=ahead)
        cancel = threading.Event()

        def put(item: tuple[str, Any]) -> bool:
            while not cancel.is_set():
                future = asyncio.run_coroutine_threadsafe(items.put(item), loop)
                try:
                    future.result(timeout=0.25)
                    return True
                except TimeoutError:
                    future.cancel()
                except Exception:
                    return False
            return False

        def produce() -> None:
            gen = None
            try:
                gen = make(cancel)
                for item in gen:
                    if cancel.is_set() or not put(("item", item)):
                        break
                put(("end", None))
            except BaseException as e:  # the consumer re-raises it
                put(("error", e))
            finally:
                if isinstance(gen, Generator):  # (a plain iterator has nothing to close)
                    gen.close()

        worker = loop.run_in_executor(self.pool, produce)
        try:
            while True:
                try:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    kind, value = await asyncio.wait_for(items.get(), left)
                except asyncio.TimeoutError:
                    raise TimedOut() from None
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            cancel.set()
            self.active -= 1
            self._slots.release()
            try:  # let the worker see the cancel (it is between items at most one step away)
                await asyncio.wait_for(asyncio.shield(worker), timeout=30)
            except BaseException:
                pass

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
