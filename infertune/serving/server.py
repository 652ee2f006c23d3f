"""Running the app under uvicorn: on a socket bound first (so that a port in use is one clear
error before the model loads), in the foreground (the CLI) or on a thread (tests, benchmarks).
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Any, Self

import uvicorn

from ..errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one). Raises UsageError, one line,
    when the port is in use or the host cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; give another --port (0 picks a free one)") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(app: Any) -> uvicorn.Server:
    # log level warning: one line per request would cost more than a tiny model's decode step
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))


class BackgroundServer:
    """The app served on a thread, for tests and benchmarks:

        with BackgroundServer(create_app(target)) as server:
            httpx.get(server.url + "/health")

    Binds 127.0.0.1 on a free port by default. Entering waits (up to `timeout` s) until the
    app's lifespan has started; leaving asks uvicorn to exit and joins the thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> None:
        self.app, self.timeout = app, timeout
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="infertune-http", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the server at {self.url} did not start within {self.timeout:g} s")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
