"""Bounded, pipelined processing of a stream: the back-pressure behind StreamSelectSteps.

A reader thread pulls items from the caller's stream only while fewer than ``max_in_flight`` units
(trajectories) are read and not yet answered; workers process admitted items concurrently; results
come out as they finish (possibly out of order). When the consumer is slower than the producer, the
reader stops pulling, gRPC's flow control stops the client, and memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Work = Callable[[], R]


class _Done:
    pass


_DONE = _Done()


class Permits:
    """A counting limit that admits one oversized item alone rather than deadlocking on it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, units: int, stop: threading.Event) -> bool:
        units = min(units, self.limit)
        with self._cond:
            while self.used and self.used + units > self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(timeout=0.1)
            self.used += units
            return True

    def release(self, units: int) -> None:
        with self._cond:
            self.used -= min(units, self.limit)
            self._cond.notify_all()


class BoundedPipeline(Generic[T, R]):
    """``run(items, prepare)`` where ``prepare(item) -> (units, work)`` runs in stream order (so it may
    carry state from one message to the next) and ``work()`` runs on a worker thread."""

    def __init__(
        self,
        max_in_flight: int,
        workers: int,
        on_in_flight: Callable[[int], None] | None = None,
    ) -> None:
        self.permits = Permits(max_in_flight)
        self.workers = workers
        self.on_in_flight = on_in_flight or (lambda _delta: None)

    def run_inline(self, items: Iterator[T], prepare: Callable[[T], tuple[int, Work[R]]]) -> Iterator[R]:
        """``run`` without threads: one item at a time, in order, in the caller's thread.

        For CPU-bound work (the rules backend) under the GIL a reader and workers only pass the GIL
        back and forth, and each hand-off to a thread that wants it can wait a whole switch interval
        (5 ms) while another thread computes; in a 50-trajectory batch of ~30 ms that was several
        per cent. One item in flight is back-pressure enough: nothing is read before the previous
        answer has been taken.
        """
        for item in items:
            units, work = prepare(item)
            self.on_in_flight(units)
            try:
                yield work()
            finally:
                self.on_in_flight(-units)

    def run(self, items: Iterator[T], prepare: Callable[[T], tuple[int, Work[R]]]) -> Iterator[R]:
        results: queue.Queue[tuple[int, R] | BaseException | _Done] = queue.Queue()
        stop = threading.Event()
        executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="select-stream")
        submitted = [0]

        def run_one(units: int, work: Work[R]) -> None:
            try:
                results.put((units, work()))
            except BaseException as error:
                results.put(error)

        def read() -> None:
            try:
                for item in items:
                    units, work = prepare(item)
                    if not self.permits.acquire(units, stop):
                        return
                    self.on_in_flight(units)
                    submitted[0] += 1
                    executor.submit(run_one, units, work)
                    if stop.is_set():
                        return
            except BaseException as error:
                results.put(error)
            finally:
                results.put(_DONE)

        reader = threading.Thread(target=read, name="select-stream-reader", daemon=True)
        reader.start()
        answered = 0
        reading = True
        try:
            while reading or answered < submitted[0]:
                got = results.get()
                if isinstance(got, _Done):
                    reading = False
                    continue
                if isinstance(got, BaseException):
                    raise got
                units, result = got
                answered += 1
                try:
                    yield result
                finally:
                    self.permits.release(units)
                    self.on_in_flight(-units)
        finally:
            stop.set()
            executor.shutdown(wait=False, cancel_futures=True)
