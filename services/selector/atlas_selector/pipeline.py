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

    def run_in_order(self, items: Iterator[T], prepare: Callable[[T], tuple[int, Work[R]]]) -> Iterator[R]:
        """``run`` for CPU-bound work: one item at a time, in order, worked in the caller's thread,
        while a reader thread reads and prepares the next item.

        Workers would gain nothing under the GIL, only pass it back and forth (a hand-off to a thread
        that wants it can wait a whole switch interval, 5 ms, while another computes). Reading is
        different: a 256-trajectory request is ~1 MB, and reading it takes HTTP/2 flow-control round
        trips (~0.8 ms here) during which the reader waits without the GIL. Read ahead, that wait
        overlaps the previous item's work (bench/README.md, selector tenth pass). Back-pressure: at
        most one prepared item waits, and one more is being read, beyond the one being worked.
        ``on_in_flight`` counts an item from when its work starts until its result has been taken.
        """
        ready: queue.Queue[tuple[int, Work[R]] | BaseException | _Done] = queue.Queue(maxsize=1)
        stop = threading.Event()

        def hand_on(got: tuple[int, Work[R]] | BaseException | _Done) -> bool:
            while not stop.is_set():
                try:
                    ready.put(got, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for item in items:
                    if not hand_on(prepare(item)):
                        return
            except BaseException as error:
                hand_on(error)
            finally:
                hand_on(_DONE)

        reader = threading.Thread(target=read, name="select-stream-reader", daemon=True)
        reader.start()
        try:
            while True:
                got = ready.get()
                if isinstance(got, _Done):
                    return
                if isinstance(got, BaseException):
                    raise got
                units, work = got
                self.on_in_flight(units)
                try:
                    yield work()
                finally:
                    self.on_in_flight(-units)
        finally:
            stop.set()  # a consumer that stopped early (a cancelled call) lets the reader go

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
