"""A real HTTP server on 127.0.0.1 with scripted misbehaviour, for download tests.

Each path is a :class:`Route` that says, request by request, what to answer:
a status, a body cut short, a delay, honouring ``Range`` or not. Every request's
``Range`` and ``If-Range`` headers are recorded so tests can check resumes.

Usage::

    with TestServer() as server:
        url = server.add("/a.mp4", Route(body=video_bytes, statuses=[500, 200]))  # fails once, then serves
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    statuses: list[int] = field(default_factory=lambda: [200])  # request n gets statuses[n]; the last repeats
    cut_at: list[int | None] = field(default_factory=list)  # request n: send only this many body bytes, then hang up
    delay_s: float = 0.0  # wait before answering
    drip_s: float = 0.0  # send the body one byte at a time, this long apart (a trickling server)
    content_type: str = "video/mp4"
    send_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    ranges: bool = True  # honour "Range: bytes=N-" with 206; False: always answer 200 with everything
    etag: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # extra headers on error answers (Retry-After)
    requests: list[dict] = field(default_factory=list)  # filled in: {"range": ..., "if_range": ...} per request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            return self._plain(404, b"no such route\n")
        n = len(route.requests)
        route.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
        if route.delay_s:
            time.sleep(route.delay_s)
        status = route.statuses[min(n, len(route.statuses) - 1)]
        if status != 200:
            return self._plain(status, f"error {status}\n".encode(), route.headers)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and route.ranges:
            start = int(match[1])
            if start >= len(route.body):
                return self._plain(416, b"range not satisfiable\n", {"Content-Range": f"bytes */{len(route.body)}"})
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(route.body) - 1}/{len(route.body)}")
        else:
            self.send_response(200)
        payload = route.body[start:]
        self.send_header("Content-Type", route.content_type)
        self.send_header("Accept-Ranges", "bytes" if route.ranges else "none")
        if route.etag:
            self.send_header("ETag", route.etag)
        cut = route.cut_at[n] if n < len(route.cut_at) else None
        if route.send_length:
            self.send_header("Content-Length", str(len(payload)))
        if cut is not None or not route.send_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        body = payload if cut is None else payload[:cut]
        if route.drip_s:
            for i in range(len(body)):
                time.sleep(route.drip_s)
                self._write(body[i : i + 1])
                if self.close_connection:
                    return
            return
        self._write(body)

    def _plain(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self._write(body)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in a timeout test must not block shutdown
    routes: dict[str, Route]

    def handle_error(self, request, client_address):  # clients hanging up are expected here
        pass


class TestServer:
    """``ThreadingHTTPServer`` on a random port of 127.0.0.1, serving in a thread."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = {}
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, path: str, route: Route) -> str:
        """Serve ``route`` at ``path``; return its full url."""
        self._server.routes[path] = route
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> TestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
