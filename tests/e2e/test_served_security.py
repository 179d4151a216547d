"""The served workbench's own defences, over real HTTP and in a real headless Chromium.

* Every HTTP answer carries ``nosniff``, ``X-Frame-Options: DENY`` and the workbench's content
  security policy (``serve.py`` wraps ``st.App`` in ``api.security_headers.SecurityHeaders``).
* ``POST /auth/cookie`` (no sign-in needed to reach it) refuses a body over 4 KiB with 413
  before reading it: one whose ``Content-Length`` announces it is answered without being
  sent, and a chunked one is cut off while it streams (the client here sends 150 MB at most
  and stops as soon as the answer arrives; the server must answer long before the end).
* ``open_browser`` fails a test whose pages break their policy (every e2e test relies on it).
"""

from __future__ import annotations

import json
import select
import socket
import urllib.request
from dataclasses import dataclass

import pytest
from e2e_seed import Served
from live_app import CspViolationError, open_browser

from api.security_headers import WORKBENCH_POLICY
from loupe.web import MAX_COOKIE_BODY
from services.session_cookies import COOKIE_ROUTE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUGE = 150 * 1024 * 1024  # the size of the body in the finding
CHUNK = 64 * 1024
# Loopback socket buffers may take a few MB on each side before the server reads anything;
# a server that reads the whole body takes all 150 MB.
MOST_SENT_BEFORE_THE_ANSWER = 32 * 1024 * 1024
ANSWER_SECONDS = 60.0


@dataclass(frozen=True)
class Answer:
    """An HTTP response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """Read one HTTP/1.1 response with a ``Content-Length`` (or up to the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before an answer: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def request_head(served: Served, framing: str) -> bytes:
    """A same-origin ``POST /auth/cookie`` request's head, with ``framing`` header(s)."""
    host = served.app.url.removeprefix("http://")
    return (
        f"POST {COOKIE_ROUTE} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def connect(served: Served) -> socket.socket:
    """A TCP connection to the served workbench."""
    return socket.create_connection(("127.0.0.1", served.app.port), timeout=ANSWER_SECONDS)


def assert_refused_as_too_large(answer: Answer) -> None:
    """A 413 in the cookie route's JSON refusal shape, with the security headers."""
    assert answer.status == 413, answer
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"error": f"the body is larger than {MAX_COOKIE_BODY} bytes"}
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_workbench_answers_with_the_security_headers(served: Served) -> None:
    for path in ("/", "/_stcore/health", "/review"):
        with urllib.request.urlopen(f"{served.app.url}{path}", timeout=30) as reply:
            assert reply.status == 200
            assert reply.headers["X-Content-Type-Options"] == "nosniff", path
            assert reply.headers["X-Frame-Options"] == "DENY", path
            assert reply.headers["Content-Security-Policy"] == WORKBENCH_POLICY, path
    assert "frame-ancestors 'none'" in WORKBENCH_POLICY


def test_an_announced_oversized_cookie_body_is_refused_unsent(served: Served) -> None:
    with connect(served) as sock:
        # Only the head is sent: a server that waited for the announced body would never answer.
        sock.sendall(request_head(served, f"Content-Length: {HUGE}"))
        assert_refused_as_too_large(read_answer(sock))


def test_a_chunked_oversized_cookie_body_is_cut_off_while_it_streams(served: Served) -> None:
    chunk = b"%x\r\n" % CHUNK + b" " * CHUNK + b"\r\n"  # whitespace: valid JSON padding
    pending = b""
    sent = 0
    with connect(served) as sock:
        sock.sendall(request_head(served, "Transfer-Encoding: chunked"))
        sock.setblocking(False)
        while True:
            readable, writable, _ = select.select([sock], [sock], [], ANSWER_SECONDS)
            assert readable or writable, "the server neither answered nor read"
            if readable:
                break
            if not pending:
                assert sent < HUGE, "the server took the whole 150 MB body without answering"
                pending, sent = chunk, sent + CHUNK
            try:
                pending = pending[sock.send(pending) :]
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        answer = read_answer(sock)
    assert_refused_as_too_large(answer)
    assert sent <= MOST_SENT_BEFORE_THE_ANSWER, f"{sent} bytes were sent before the answer"


def test_a_page_that_breaks_the_policy_fails_the_browser_block(served: Served) -> None:
    with pytest.raises(CspViolationError, match="img-src"), open_browser() as page:
        page.goto(served.app.url)
        page.get_by_role("button", name="Sign in").wait_for()
        page.evaluate(
            "() => { const img = document.createElement('img');"
            " img.src = 'https://images.example/part.png'; document.body.append(img); }"
        )
