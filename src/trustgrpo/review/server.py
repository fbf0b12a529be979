"""Serving the review app with uvicorn: in the foreground (``trustgrpo review serve``) or in
a background thread beside a training run (``trustgrpo train RUN.toml --review``)::

    handle = serve_in_background(run_dir)          # http://127.0.0.1:8000
    print(handle.url)
    ...
    handle.stop()

The server binds 127.0.0.1 unless told otherwise; binding another address prints a warning,
since the page then answers everyone who can reach that address (put it behind TLS).
``port=0`` picks a free port (the handle's ``url`` says which).
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustgrpo.errors import UserError
from trustgrpo.review.queue import QueueConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server(
    run_dir: Path,
    host: str,
    port: int,
    *,
    url: str | None,
    signing_key: Path | None,
    queue: QueueConfig | None,
    log_level: str,
) -> Any:
    try:
        import uvicorn

        from trustgrpo.review.app import create_app
    except ModuleNotFoundError as e:  # the [review] extra is not installed
        raise UserError(
            f"the review server needs the review extra ({e.name} is missing): "
            "pip install 'trustgrpo[review]'"
        ) from None
    if not _is_loopback(host):
        print(
            f"trustgrpo review: warning: serving on {host}, not a loopback address: anyone "
            "who can reach it can try to log in; put it behind TLS",
            file=sys.stderr,
        )
    app = create_app(run_dir, url=url, signing_key=signing_key, queue=queue)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
    )
    return uvicorn.Server(config)


def serve(
    run_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    url: str | None = None,
    signing_key: Path | None = None,
    queue: QueueConfig | None = None,
) -> None:
    """Serve the review app in the foreground until interrupted (Ctrl-C)."""
    server = _server(
        Path(run_dir), host, port, url=url, signing_key=signing_key, queue=queue, log_level="info"
    )
    server.run()


@dataclass
class ServerHandle:
    """A review server running in a background thread."""

    url: str
    """Where it answers, e.g. ``http://127.0.0.1:8000``."""
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_background(
    run_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    url: str | None = None,
    signing_key: Path | None = None,
    queue: QueueConfig | None = None,
    start_timeout: float = 20.0,
) -> ServerHandle:
    """Start the review app in a daemon thread and return once it accepts connections.

    The run directory may not have a ledger yet (the pages wait for it). Raises
    :class:`UserError` when the server cannot start (the port is taken, say).
    """
    server = _server(
        Path(run_dir),
        host,
        port,
        url=url,
        signing_key=signing_key,
        queue=queue,
        log_level="warning",
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as e:  # SystemExit from uvicorn when it cannot bind
            failure.append(e)

    thread = threading.Thread(target=run, name="trustgrpo-review", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            why = f": {failure[0]!r}" if failure else ""
            raise UserError(f"the review server did not start on {host}:{port}{why}")
        time.sleep(0.02)
    bound = port
    for s in getattr(server, "servers", []):
        for sock in s.sockets:
            bound = sock.getsockname()[1]
            break
    shown = f"[{host}]" if ":" in host else host
    return ServerHandle(f"http://{shown}:{bound}", server, thread)
