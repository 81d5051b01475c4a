"""A TCP proxy on loopback that a test can cut and restore: the database "going away" without touching
the database server that other tests share.

    proxy = TcpProxy("127.0.0.1", 5432).start()   # proxy.port forwards to 127.0.0.1:5432
    proxy.cut("blackhole")   # live connections reset; new ones accepted but never answered (a hung network)
    proxy.cut("refuse")      # live connections reset; new ones refused (the server is down)
    proxy.cut("stall")       # live connections kept open but nothing passes; new ones hang (a partition)
    proxy.restore()          # forwarding again, on the same port
    proxy.close()

Plain threads and blocking sockets: two pumps per connection, one acceptor. Nothing here is clever on
purpose; the system under test is the control plane, not the proxy.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["open", "blackhole", "refuse", "stall"]


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees the connection die at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.mode: Mode = "open"
        self.accepted = 0  # connections accepted while open (forwarded)
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._held: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False

    # --- control ---------------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def cut(self, mode: Literal["blackhole", "refuse", "stall"] = "blackhole") -> None:
        """Reset every live connection (stall: keep them, silent); new ones hang or are refused (refuse)."""
        with self._lock:
            self.mode = mode
            if mode == "stall":
                return
            live, self._live = self._live, set()
            listener = self._listener if mode == "refuse" else None
            if listener is not None:
                self._listener = None
        for sock in live:
            _reset(sock)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def restore(self) -> None:
        with self._lock:
            stalled = self.mode == "stall"
            self.mode = "open"
            held, self._held = self._held, set()
            live = set(self._live) if stalled else set()
            self._live -= live
            relisten = self._listener is None
        for sock in held | live:  # what stalled is dead by now, as after a real partition
            _reset(sock)
        if relisten:
            self._listen()

    def close(self) -> None:
        self._closed = True
        self.cut("refuse")
        with self._lock:
            held, self._held = self._held, set()
        for sock in held:
            _reset(sock)

    # --- plumbing --------------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        self.port = int(listener.getsockname()[1])
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"pgproxy-{self.port}", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed (cut "refuse" or close)
            with self._lock:
                mode = self.mode
                if mode in ("blackhole", "stall"):
                    self._held.add(client)
                    continue
            if mode != "open":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self.accepted += 1
                self._live.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.mode == "stall":
                    continue  # a partition: bytes go nowhere, nobody is told
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._live.discard(src)
                self._live.discard(dst)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
