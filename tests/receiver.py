"""A real HTTP server on loopback, in a thread: the business system callbacks are sent to.

It records every request (path, headers, body) and answers from a script: each queued
answer is used once, then 200. `hold()` makes the next request (only) wait for `release()`
before it is answered, for killing a worker or racing a second attempt mid-send; `on_request`
runs in the server's thread while the request is in flight. Nothing is mocked: the code
under test opens a real socket.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self, port: int | None = None, ssl_context: ssl.SSLContext | None = None):
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        self.arrived = threading.Event()
        self._held: threading.Event | None = None
        self._hold_next = False
        self.on_request: Callable[[Received], None] | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks"

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def hold(self) -> None:
        self._held = threading.Event()
        self._hold_next = True

    def release(self) -> None:
        if self._held is not None:
            self._held.set()

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                received = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with receiver._lock:
                    receiver.requests.append(received)
                    answer = receiver.answers.pop(0) if receiver.answers else Answer()
                    held, receiver._hold_next = receiver._hold_next, False
                if receiver.on_request is not None:
                    receiver.on_request(received)
                receiver.arrived.set()
                if held and receiver._held is not None:
                    receiver._held.wait(60)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client went away (a killed worker)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
