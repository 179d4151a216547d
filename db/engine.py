"""Engine and session factory: SQLite pragmas, one sessionmaker, migrations at start-up.

SQLite notes (the default backend):

* Every connection gets ``PRAGMA journal_mode=WAL`` (readers never block the writer) and
  ``PRAGMA foreign_keys=ON`` (SQLite enforces foreign keys only when asked, per connection).
* Concurrent writers wait for each other up to :data:`SQLITE_BUSY_TIMEOUT_SECONDS`.
* Python's ``sqlite3`` driver opens a transaction only before the first INSERT/UPDATE/DELETE,
  so reads before the first write run in autocommit and a writer waits for the lock instead of
  failing on a stale snapshot. Its flaw is that a SAVEPOINT issued before any write would start
  the transaction itself, and releasing it would then commit everything: a ``savepoint`` hook
  opens the real transaction first, so ``Session.begin_nested()`` stays nested.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import ConflictError
from db.migrate import downgrade, upgrade
from db.models.reviews import refuse_bulk_review_changes
from db.settings import database_url
from db.sqlite_connections import begin_before_first_savepoint, set_sqlite_pragmas

SQLITE_BUSY_TIMEOUT_SECONDS = 15.0

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "create_engine_for_url",
    "downgrade",
    "init_db",
    "is_sqlite",
    "make_session_factory",
    "transaction",
    "upgrade",
]


def is_sqlite(engine_or_url: Engine | URL | str) -> bool:
    """Tell whether an engine or URL uses SQLite."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def create_engine_for_url(url: str | URL | None = None) -> Engine:
    """Create an engine; SQLite engines get the pragmas and transaction fix described above.

    Args:
        url: Any SQLAlchemy URL; ``None`` means :func:`db.settings.database_url`.

    Returns:
        A new engine (the schema is not touched: see :func:`init_db`).
    """
    resolved = make_url(url if url is not None else database_url())
    if not is_sqlite(resolved):
        return create_engine(resolved, pool_pre_ping=True)
    _create_sqlite_parent_dir(resolved)
    engine = create_engine(resolved, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
    event.listen(engine, "connect", set_sqlite_pragmas)
    event.listen(engine, "savepoint", begin_before_first_savepoint)
    return engine


def init_db(url: str | URL | None = None) -> Engine:
    """Create the engine and bring the schema to the latest migration (``upgrade head``).

    Args:
        url: Any SQLAlchemy URL; ``None`` means ``$LOUPE_DATABASE_URL`` or the SQLite file
            ``loupe.db`` in the data directory.

    Returns:
        The engine, with the schema up to date.
    """
    engine = create_engine_for_url(url)
    upgrade(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the application's session factory (create it once, use sessions as contexts).

    Objects stay usable after commit (``expire_on_commit=False``), which suits a UI that shows
    what it just saved. Sessions from this factory refuse ORM bulk changes to reviews.

    Args:
        engine: The engine from :func:`init_db`.

    Returns:
        A ``sessionmaker``; use ``with factory() as session, session.begin(): ...``.
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    event.listen(factory, "do_orm_execute", refuse_bulk_review_changes)
    return factory


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on any error.

    A database integrity error (a duplicate, a foreign key, a check) leaves as
    :class:`db.errors.ConflictError`, so callers that show messages need not know SQLAlchemy.

    Args:
        factory: The session factory from :func:`make_session_factory`.

    Yields:
        The session.

    Raises:
        ConflictError: If the transaction broke an integrity rule.
    """
    try:
        with factory() as session, session.begin():
            yield session
    except IntegrityError as err:
        raise ConflictError(f"the change conflicts with what is stored ({err.orig})") from err


def _create_sqlite_parent_dir(url: URL) -> None:
    """Create the directory of a file-backed SQLite database."""
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
