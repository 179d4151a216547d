"""A throwaway PostgreSQL server for the test suite, and fresh databases on it.

:func:`start_cluster` runs Debian's ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<n>/bin``)
on a temporary directory: trust authentication for the ``postgres`` role, listening on
127.0.0.1 at a free port, its Unix socket in the same directory, durability switched off (the
data is thrown away). As root the server runs as the ``postgres`` OS user, which Debian's
``postgresql`` package creates (``runuser -u postgres --``); PostgreSQL refuses to run as root.
:meth:`PostgresServer.stop` stops it and deletes the directory.

:func:`external_server` wraps an existing server instead (``LOUPE_TEST_POSTGRES_URL``); its
role needs the CREATEDB privilege. Either way :meth:`PostgresServer.create_database` makes an
empty database (from ``template0``) and returns its SQLAlchemy URL
(``postgresql+psycopg://postgres@127.0.0.1:<port>/<name>``).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
START_TIMEOUT_SECONDS = 30
DRIVER = "postgresql+psycopg"

# A throwaway cluster: nothing needs to survive a crash, so skip the disk flushes.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")

_database_numbers = itertools.count(1)


def find_postgres_bin_dir() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    candidates = [
        directory
        for directory in Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/"))
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda directory: _version_key(directory.parent.name))


@dataclass
class PostgresServer:
    """A PostgreSQL server the tests may create databases on.

    Attributes:
        admin_url: URL of a database to connect to for ``CREATE/DROP DATABASE``.
        directory: The throwaway cluster's directory (``None`` for an external server).
        bin_dir: Where ``pg_ctl`` is (``None`` for an external server).
    """

    admin_url: URL
    directory: Path | None = None
    bin_dir: Path | None = None
    run_as: list[str] = field(default_factory=list)

    def url(self, database: str) -> str:
        """Return the SQLAlchemy URL of ``database`` on this server."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create_database(self) -> tuple[str, str]:
        """Create an empty database (a copy of ``template0``); return ``(name, url)``."""
        name = f"loupe_test_{os.getpid()}_{next(_database_numbers)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name, self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open to it."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop a throwaway cluster and delete its directory (no-op for an external server)."""
        if self.directory is None or self.bin_dir is None:
            return
        directory, self.directory = self.directory, None
        if (directory / "data" / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                stopped = subprocess.run(
                    [*self.run_as, str(self.bin_dir / "pg_ctl"), "stop", "-D", "data"]
                    + ["-m", mode, "-w", "-t", str(START_TIMEOUT_SECONDS)],
                    cwd=directory,
                    capture_output=True,
                    check=False,
                )
                if stopped.returncode == 0:
                    break
        shutil.rmtree(directory, ignore_errors=True)

    def _admin(self, statement: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()


def external_server(url: str) -> PostgresServer:
    """Wrap an existing server given by a SQLAlchemy URL (its role needs CREATEDB)."""
    return PostgresServer(admin_url=make_url(url))


def start_cluster(bin_dir: Path, *, timeout: float = START_TIMEOUT_SECONDS) -> PostgresServer:
    """Create and start a throwaway cluster; the caller must :meth:`~PostgresServer.stop` it.

    Args:
        bin_dir: Where ``initdb`` and ``pg_ctl`` are (see :func:`find_postgres_bin_dir`).
        timeout: How long to wait for the server to accept connections, in seconds.

    Returns:
        The running server.

    Raises:
        RuntimeError: If the cluster cannot be created or does not start in time (with the
            end of the server log).
    """
    run_as = _run_as()
    # As root the directory must be reachable by the postgres user: /tmp always is.
    directory = Path(tempfile.mkdtemp(prefix="loupe-pg-", dir="/tmp" if run_as else None))
    if run_as:
        account = pwd.getpwnam(SERVER_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
    server = PostgresServer(
        admin_url=URL.create(DRIVER, username=SERVER_USER, host="127.0.0.1", database="postgres"),
        directory=directory,
        bin_dir=bin_dir,
        run_as=run_as,
    )
    try:
        _run(
            [*run_as, str(bin_dir / "initdb"), "-D", "data", "-A", "trust", "-U", SERVER_USER]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            directory,
            "initdb",
        )
        port = _start(server, directory, timeout)
        server.admin_url = server.admin_url.set(port=port)
        _wait_until_ready(server, directory, timeout)
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)  # in case the caller never gets to stop it (a no-op then)
    return server


def _start(server: PostgresServer, directory: Path, timeout: float) -> int:
    """Start the server on a free port (a few tries: another process may take the port)."""
    assert server.bin_dir is not None
    options = " ".join(
        ["-h 127.0.0.1", f"-k {directory}", *(f"-c {setting}" for setting in FAST_SETTINGS)]
    )
    for attempt in range(3):
        port = _free_port()
        started = subprocess.run(
            [*server.run_as, str(server.bin_dir / "pg_ctl"), "start", "-D", "data"]
            + ["-l", "server.log", "-w", "-t", str(int(timeout))]
            + ["-o", f"{options} -p {port}"],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        if started.returncode == 0:
            return port
        if attempt == 2 or "already in use" not in _log_tail(directory):
            raise RuntimeError(
                f"pg_ctl start failed ({started.returncode}): {started.stdout}{started.stderr}"
                f"\n--- server log ---\n{_log_tail(directory)}"
            )
    raise AssertionError("unreachable")


def _wait_until_ready(server: PostgresServer, directory: Path, timeout: float) -> None:
    """Poll until a query succeeds (``pg_ctl -w`` already waited; this is the real check)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server._admin("SELECT 1")
            return
        except Exception as error:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not accept connections within {timeout} s: {error}"
                    f"\n--- server log ---\n{_log_tail(directory)}"
                ) from error
            time.sleep(0.2)


def _run_as() -> list[str]:
    """The command prefix that runs the server's programs as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, but there is no {SERVER_USER!r} OS user to run PostgreSQL as "
            "(Debian's postgresql package creates it: `make postgres`)"
        ) from None
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", SERVER_USER, "--"]


def _run(command: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(directory: Path, lines: int = 30) -> str:
    try:
        return "\n".join((directory / "server.log").read_text().splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)
