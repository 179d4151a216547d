"""Alembic, configured in code: no ``alembic.ini`` is needed at run time.

The scripts live in the package (``db/migrations``). :func:`upgrade` and :func:`downgrade` run
them on an engine inside one transaction. On SQLite that transaction is opened explicitly and
foreign-key enforcement is switched off for its duration (SQLite's documented procedure for
schema changes, which batch migrations need when they rebuild a table); ``PRAGMA
foreign_key_check`` must come back clean before the transaction commits.

For developers, ``python -m db`` wraps the usual alembic commands (see :mod:`db.__main__`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from db.errors import MigrationError
from db.sqlite_connections import begin_sqlite_transaction

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")


def alembic_config(
    connection: Connection | None = None,
    *,
    url: str | None = None,
    output: TextIO | None = None,
) -> Config:
    """Build the alembic configuration for Loupe's migration scripts.

    Args:
        connection: A connection to migrate (online mode); ``env.py`` uses it as is.
        url: A database URL for offline (``--sql``) mode or for ``env.py`` to connect to.
        output: Where alembic prints (SQL in offline mode, ``current``, ``history``); default
            ``sys.stdout`` as it is at call time.

    Returns:
        A ready ``alembic.config.Config``.
    """
    stream = output if output is not None else sys.stdout
    config = Config(output_buffer=stream, stdout=stream)
    config.set_main_option("script_location", _escape_percent(str(MIGRATIONS_DIR)))
    if url is not None:
        config.set_main_option("sqlalchemy.url", _escape_percent(url))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` in one transaction.

    Args:
        engine: The database to migrate.
        revision: Target revision (default ``head``).
    """
    _run_on_engine(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Revert the migrations down to ``revision`` (``"base"`` drops every table).

    Args:
        engine: The database to migrate.
        revision: Target revision.
    """
    _run_on_engine(engine, lambda config: command.downgrade(config, revision))


def head_revision() -> str:
    """Return the newest revision of Loupe's migration scripts (what ``upgrade`` reaches)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its scripts
        raise MigrationError(f"No migration scripts in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or ``None`` for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside the single transaction a migration runs in.

    Args:
        engine: The database to migrate.

    Yields:
        A connection in an open transaction, committed on success and rolled back on error.

    Raises:
        MigrationError: On SQLite, if the migrated data breaks a foreign key.
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        with _sqlite_migration_transaction(connection):
            yield connection


@contextmanager
def _sqlite_migration_transaction(connection: Connection) -> Iterator[None]:
    """Run the body in an explicit SQLite transaction with foreign keys off, then check them."""
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction
    connection.commit()
    try:
        connection.begin()
        begin_sqlite_transaction(connection)
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise MigrationError(f"migration broke foreign keys: {broken[:5]!r}")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def _run_on_engine(engine: Engine, run: Callable[[Config], None]) -> None:
    with migration_connection(engine) as connection:
        run(alembic_config(connection))


def _escape_percent(value: str) -> str:
    """Escape ``%`` for alembic's ConfigParser-backed options."""
    return value.replace("%", "%%")
