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
from typing import Any, Generic, TypeVar

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
        """``run`` for CPU-bound work: one item at a time, in order, on one worker thread, while a
        reader thread reads and prepares the next item and the caller's thread hands the previous
        result on.

        More workers would gain nothing under the GIL, only pass it back and forth (a hand-off to a
        thread that wants it can wait a whole switch interval, 5 ms, while another computes). Reading
        and sending are different: a 256-trajectory request is ~1 MB, and gRPC takes ~0.8 ms of
        flow-control round trips to read it and ~0.4 ms to send a reply, time its thread spends
        waiting without the GIL. On their own threads those waits overlap the work
        (bench/README.md, selector tenth pass). Back-pressure: beyond the item being worked, one
        prepared item waits and one more is being read; one result waits and one is being sent.
        ``on_in_flight`` counts an item from when its work starts until its result has been taken;
        what a consumer that stopped early left untaken is uncounted when the last thread leaves.
        """
        ready: queue.Queue[tuple[int, Work[R]] | BaseException | _Done] = queue.Queue(maxsize=1)
        done: queue.Queue[tuple[int, R] | BaseException | _Done] = queue.Queue(maxsize=1)
        stop = threading.Event()
        books = threading.Lock()
        counted = [0, 3]  # units in flight, threads (reader, worker, consumer) still running

        def count(units: int) -> None:
            with books:
                counted[0] += units
            self.on_in_flight(units)

        def leave() -> None:
            with books:
                counted[1] -= 1
                left, counted[0] = (counted[0], 0) if counted[1] == 0 else (0, counted[0])
            if left:
                self.on_in_flight(-left)

        def hand_on(into: queue.Queue[Any], got: object) -> bool:
            while not stop.is_set():
                try:
                    into.put(got, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def take(source: queue.Queue[Any]) -> Any:
            while not stop.is_set():
                try:
                    return source.get(timeout=0.1)
                except queue.Empty:
                    continue
            return _DONE

        def read() -> None:
            try:
                for item in items:
                    if not hand_on(ready, prepare(item)):
                        return
            except BaseException as error:
                hand_on(ready, error)
            finally:
                hand_on(ready, _DONE)
                leave()

        def work_all() -> None:
            try:
                while True:
                    got = take(ready)
                    if isinstance(got, (_Done, BaseException)):
                        hand_on(done, got)
                        return
                    units, work = got
                    count(units)
                    try:
                        result = work()
                    except BaseException as error:
                        count(-units)
                        hand_on(done, error)
                        return
                    if not hand_on(done, (units, result)):
                        return
            finally:
                leave()

        for target, name in ((read, "select-stream-reader"), (work_all, "select-stream-worker")):
            threading.Thread(target=target, name=name, daemon=True).start()
        try:
            while True:
                got = done.get()
                if isinstance(got, _Done):
                    return
                if isinstance(got, BaseException):
                    raise got
                units, result = got
                try:
                    yield result
                finally:
                    count(-units)
        finally:
            stop.set()  # a consumer that stopped early (a cancelled call) lets both threads go
            leave()

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
