"""A TCP link a test can cut: 127.0.0.1:<port> forwarded to a server, every byte real.

`cut()` resets every open connection and closes the listener, so new connections are
refused (a dead endpoint, a dropped network) until `up()`. `cut_at(marker, nth, after)`
cuts by itself once the nth `marker` has gone towards the server, `after` bytes past it
(mid-request: the server sees half an upload).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class Link:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._trigger: tuple[bytes, int, int] | None = None
        self._seen = 0  # markers gone towards the server since cut_at
        # cut_at's `after` becomes, once the nth marker has passed, the bytes still to let by
        self.sent = 0  # bytes gone towards the server
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
            self._trigger = None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:  # a reset, not a tidy close: what a dropped link looks like
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def cut_at(self, marker: bytes, nth: int = 1, after: int = 0) -> None:
        with self._lock:
            self._trigger, self._seen = (marker, nth, after), 0

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                cut_here = self._cut_point(data) if outbound else None
                dst.sendall(data if cut_here is None else data[:cut_here])
                if cut_here is not None:
                    self.cut()
                    return
                if outbound:
                    self.sent += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _cut_point(self, data: bytes) -> int | None:
        """Where in `data` to cut (None: forward it all), counting `after` across chunks."""
        with self._lock:
            if self._trigger is None:
                return None
            marker, nth, after = self._trigger
            start = 0
            if self._seen < nth:
                while self._seen < nth:
                    found = data.find(marker, start)
                    if found < 0:
                        return None
                    self._seen += 1
                    start = found + 1
                start -= 1  # the nth marker's own offset
            if start + after <= len(data):
                return start + after
            self._trigger = (marker, nth, start + after - len(data))
            return None
