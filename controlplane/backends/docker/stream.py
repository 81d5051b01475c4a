"""Moving a container's output from a blocking socket into the event loop, bounded.

docker-py only offers blocking reads (the attach socket, the ``logs`` generator). A run may write tens of
megabytes, so reading must never outrun the consumer: ``ChunkPump`` reads in its own thread and hands
chunks to the loop through a semaphore with a few slots, so at most ``slots`` chunks are in flight; when
the consumer is slow the thread blocks, the socket's buffer fills and the engine stops reading the
container's stdout (the script blocks on write). Closing the pump shuts the socket down, which wakes the
thread at once. ``Demuxer`` splits docker's multiplexed attach stream (8-byte headers) without ever
holding more than one header in memory. ``in_thread`` runs one blocking socket write off the loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import threading
from collections.abc import AsyncIterator, Callable, Iterator

log = logging.getLogger(__name__)

STDOUT = 1
STDERR = 2
_HEADER = struct.Struct(">BxxxL")
_EOF = object()


class Demuxer:
    """Incremental splitter of docker's stdcopy format: ``[stream, 0, 0, 0, size:uint32be] payload``."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._stream = 0
        self._left = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self._left == 0:
                take = min(_HEADER.size - len(self._header), len(view) - i)
                self._header += view[i : i + take]
                i += take
                if len(self._header) == _HEADER.size:
                    self._stream, self._left = _HEADER.unpack(self._header)
                    self._header.clear()
                continue
            n = min(self._left, len(view) - i)
            yield self._stream, bytes(view[i : i + n])
            self._left -= n
            i += n


class ChunkPump:
    """Reads ``read()`` in a daemon thread until it returns b"" and yields the chunks on the loop.

    ``read`` blocks; ``interrupt`` must make a blocked ``read`` return or raise (shut the socket down);
    ``release`` frees the reader's resources and runs in the reader thread once it is done.
    """

    def __init__(
        self,
        read: Callable[[], bytes],
        *,
        interrupt: Callable[[], None],
        release: Callable[[], None] = lambda: None,
        slots: int = 8,
        name: str = "cp-docker-stream",
    ) -> None:
        self._read = read
        self._interrupt = interrupt
        self._release = release
        self._loop = asyncio.get_running_loop()
        self._items: collections.deque[object] = collections.deque()
        self._ready = asyncio.Event()
        self._slots = threading.Semaphore(slots)
        self._closed = threading.Event()
        self._ended = False
        self.reached_end = False  # the engine ended the stream (EOF or read error), not our close()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                data = self._read()
                if not data:
                    self.reached_end = not self._closed.is_set()  # EOF from the engine, not our shutdown
                    break
                while not self._slots.acquire(timeout=0.2):
                    if self._closed.is_set():
                        return
                self._post(data)
        except Exception as exc:  # the reader's error ends the stream; the caller inspects the container
            if not self._closed.is_set():
                log.debug("stream reader stopped: %r", exc)
                self.error = exc
                self.reached_end = True
        finally:
            self._post(_EOF)
            try:
                self._release()
            except Exception:
                log.debug("releasing the stream failed", exc_info=True)

    def _post(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._closed.set()

    def _deliver(self, item: object) -> None:
        self._items.append(item)
        self._ready.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self._ended:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            item = self._items.popleft()
            if item is _EOF:
                self._ended = True
                return
            self._slots.release()
            assert isinstance(item, bytes)
            yield item

    def close(self) -> None:
        """Stop reading now; safe to call more than once and from the loop (never blocks)."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._interrupt()
        except Exception:
            log.debug("interrupting the stream failed", exc_info=True)

    @property
    def reader_alive(self) -> bool:
        return self._thread.is_alive()


def in_thread(fn: Callable[[], None], *, name: str) -> asyncio.Future[None]:
    """Run a blocking socket operation in its own daemon thread: not a pool thread, because it may wait
    for something (the container's start) that itself needs a pool thread. Cancelling the future only
    stops anyone from hearing the result; shut the socket down to end the operation itself."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)

    def run() -> None:
        error: BaseException | None = None
        try:
            fn()
        except BaseException as exc:  # handed to the loop
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the loop is closed
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
