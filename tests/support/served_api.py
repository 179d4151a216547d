"""The inspection API served by a real uvicorn on a free loopback port, for over-HTTP tests.

Imported as ``from served_api import serving``::

    with serving(create_app(factory, runtime="torch")) as base_url:
        httpx.get(f"{base_url}/api/v1/...")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

START_SECONDS = 20


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` on ``127.0.0.1`` at a free port until the block ends; yield its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_SECONDS
    while not server.started:
        assert time.monotonic() < deadline, f"uvicorn did not start within {START_SECONDS} s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
