"""HTTP for the download tests: a local server that answers as scripted, a refused port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML_ERROR_PAGE = b"<html><body><h1>500 Internal Server Error</h1></body></html>\n"
PROXY_VARIABLES = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


def closed_port_url() -> str:
    """An URL nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist.npz"


@dataclass
class ScriptedServer:
    """Answers each path with its scripted (status, body) replies in turn; the last repeats."""

    base: str
    replies: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def script(self, path: str, *replies: tuple[int, bytes]) -> str:
        self.replies[path] = list(replies)
        return self.base + path

    def next_reply(self, path: str) -> tuple[int, bytes]:
        self.requests.append(path)
        replies = self.replies.get(path, [(404, b"not found")])
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def hits(self, path: str) -> int:
        return self.requests.count(path)


def _handler(scripted: list[ScriptedServer]) -> type[BaseHTTPRequestHandler]:
    """A request handler answering from scripted[0] (set once the server has its port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            status, body = scripted[0].next_reply(self.path)
            self.send_response(status)
            is_html = body.lstrip().startswith(b"<")
            self.send_header(
                "Content-Type", "text/html" if is_html else "application/octet-stream"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # keep pytest's output clean

    return Handler


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    """A ScriptedServer on a free loopback port, in a thread, shut down on exit."""
    scripted: list[ScriptedServer] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(scripted))
    scripted.append(ScriptedServer(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield scripted[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
