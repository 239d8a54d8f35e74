"""The bounded pool that runs plain ``def perform`` jobs, with daemon threads.

Like ``ThreadPoolExecutor`` (threads start on demand up to ``max_workers`` and are reused), but
its threads are daemons and are not joined at interpreter exit: a sync job still running when
the drain's grace period ends must not keep the process alive (its job is rescued by the
lifeline, exactly as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[Future[Any] | None, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(Executor):
    def __init__(self, max_workers: int, name: str = "powertools-job") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._put((future, fn, args, kwargs))
        return future

    def run_soon(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread with no Future (the caller reports its result)."""
        self._put((None, fn, args, {}))

    def _put(self, item: _Item) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.put(item)
            if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future is None:
                fn(*args, **kwargs)
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None and item[0] is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class SyncRunner:
    """Runs ``perform`` of sync workers on the pool and reports back to the event loop.

    Results are handed over in batches: a pool thread appends to a shared list and wakes the
    loop only when no wake-up is pending, so at high throughput one loop wake-up settles many
    jobs (``run_in_executor`` pays one cross-thread wake-up per job).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: DaemonThreadPool) -> None:
        self.loop = loop
        self.pool = pool
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def run(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pool.run_soon(self._call, fn, arg, future)
        return future

    def _call(self, fn: Callable[[Any], Any], arg: Any, future: asyncio.Future[Any]) -> None:
        try:
            entry: tuple[asyncio.Future[Any], Any, BaseException | None] = (future, fn(arg), None)
        except BaseException as exc:
            entry = (future, None, exc)
        with self._lock:
            self._done.append(entry)
            if self._scheduled:
                return
            self._scheduled = True
        # A closed loop means the process is exiting: the job is left to the lifeline.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        with self._lock:
            done = list(self._done)
            self._done.clear()
            self._scheduled = False
        for future, result, exc in done:
            if future.cancelled():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
