"""A TCP proxy on loopback in front of a real server, that a test can cut (connections
refused, as when the server is down) or make hang (connections accepted, never answered, as a
server stuck or a network that drops packets), then put back."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

PASS, REFUSE, HANG = "pass", "refuse", "hang"


class Proxy:
    """Forwards 127.0.0.1:<port> to `target` (host, port) while `mode` is PASS."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.mode = target, PASS
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(0.2)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed: cut, or stopped
                return
            with self._lock:
                if self.mode == HANG:
                    self._held.append(client)  # never read, never answered
                    continue
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client, socket.create_connection(self.target) as up:
            ends = [client, up]
            while self.mode == PASS and not self._stopped.is_set():
                ready, _, _ = select.select(ends, [], [], 0.2)
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (up if end is client else client).sendall(data)

    def cut(self) -> None:
        """Refuse connections (the port closed) and drop those open."""
        with self._lock:
            self.mode = REFUSE
            self._listener.close()

    def hang(self) -> None:
        """Accept connections and never answer them; drop those open."""
        with self._lock:
            self.mode = HANG

    def restore(self) -> None:
        """Forward again, on the same port."""
        with self._lock:
            if self.mode == REFUSE:
                self._listener = self._listen(self.port)
            self.mode = PASS
            for held in self._held:
                held.close()
            self._held.clear()

    def stop(self) -> None:
        self._stopped.set()
        self.restore()
        self._listener.close()
