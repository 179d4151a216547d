"""A real workbench server and a real headless Chromium, for end-to-end tests and UI benchmarks.

``LiveApp`` starts ``streamlit run serve.py`` (the workbench with its session-cookie routes
and security headers, as ``make demo`` does) on a free local port with its own data directory
and waits until the server answers its health check. ``open_browser`` launches Debian's
``/usr/bin/chromium`` through Playwright (``executable_path``: Playwright's own browser
download is not used) and records every content-security-policy violation in any of its tabs:
the block fails at its end if there was one (the workbench's policy is
``api.security_headers.WORKBENCH_POLICY``). ``sign_in`` fills in the login form the way a
person would.

Used by ``tests/e2e`` and by ``bench/ui_timings.py`` / ``bench/screenshots.py`` (which put this
folder on ``sys.path``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Run in every tab and frame before the page's own scripts: report each violation of the
# page's content security policy to Python (the binding outlives navigations and reloads).
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (event) => {
  window.__loupeCspViolation({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    line: event.lineNumber,
    document: event.documentURI,
    sample: event.sample,
  });
}, true);
"""
MISSING_BROWSER = (
    f"{CHROMIUM} is missing: install Debian's browser with "
    "`apt-get update && apt-get install -y chromium chromium-driver` (the Makefile's "
    "`browser` target does this)."
)


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveApp:
    """``streamlit run serve.py`` in a subprocess, bound to 127.0.0.1.

    Args:
        data_dir: ``LOUPE_DATA_DIR`` of the server (database, stored images, maps).
        models_dir: ``LOUPE_MODELS_DIR`` of the server.
        env: Extra environment variables (e.g. ``LOUPE_SKIP_DEMO``, ``LOUPE_ADMIN_PASSWORD``).
        log_path: Where the server's stdout and stderr go.
    """

    def __init__(
        self, data_dir: Path, models_dir: Path, env: dict[str, str], log_path: Path
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.data_dir = data_dir
        self._env = {
            **os.environ,
            "LOUPE_DATA_DIR": str(data_dir),
            "LOUPE_MODELS_DIR": str(models_dir),
            **env,
        }
        self._env.pop("LOUPE_DATABASE_URL", None)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Start the server and wait for its health check.

        Returns:
            Seconds from launch until the server answered.
        """
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "serve.py"),
            "--server.headless", "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        log = self.log_path.open("wb")
        started = time.perf_counter()
        self._process = subprocess.Popen(
            command, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"The server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"The server did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and the job worker it started."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        from workers.launcher import worker_pid

        pid = worker_pid(self.data_dir)  # the app starts a detached worker unless told not to
        if pid is not None:
            os.kill(pid, signal.SIGTERM)


class CspViolationError(AssertionError):
    """A page broke its content security policy while the browser was open."""


@contextmanager
def open_browser(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A Playwright page in Debian's headless Chromium that fails on any CSP violation.

    Every tab of the page's context reports the violations of its content security policy
    (``securitypolicyviolation`` events); when the block ends without an error of its own, a
    violation in any tab raises :class:`CspViolationError`, listing them.

    Yields:
        A ``playwright.sync_api.Page``.

    Raises:
        CspViolationError: A page broke its content security policy.
    """
    if not CHROMIUM.exists():
        raise FileNotFoundError(MISSING_BROWSER)
    from playwright.sync_api import Error, sync_playwright

    violations: list[dict] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # A context of its own, so that a test can open a second tab sharing the cookies.
            context = browser.new_context(viewport={"width": width, "height": height})
            context.expose_binding(
                "__loupeCspViolation", lambda _source, violation: violations.append(violation)
            )
            context.add_init_script(CSP_LISTENER)
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
            for tab in context.pages:  # a round trip delivers the reports still under way
                with suppress(Error):
                    tab.evaluate("() => new Promise((done) => setTimeout(done, 100))")
        finally:
            browser.close()
    if violations:
        listed = "\n".join(f"  {violation}" for violation in violations[:20])
        count = len(violations)
        raise CspViolationError(f"{count} content security policy violation(s):\n{listed}")


def sign_in(page: object, url: str, name: str, password: str) -> None:
    """Open the app, fill in the sign-in form and wait until the sidebar shows the user."""
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
