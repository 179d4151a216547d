"""Connection-level helpers for SQLite (used by the engine and by the migration runner)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection
from sqlalchemy.pool import ConnectionPoolEntry


def set_sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    """``connect`` hook: WAL journal and foreign-key enforcement on every new connection."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def begin_before_first_savepoint(connection: Connection, _name: str) -> None:
    """``savepoint`` hook: open the real transaction before SQLite sees the first SAVEPOINT.

    Python's ``sqlite3`` driver begins a transaction only before a data-changing statement. A
    SAVEPOINT issued earlier would start the transaction itself, and its RELEASE would then
    commit everything so far: the outer transaction would no longer be atomic.
    """
    begin_sqlite_transaction(connection)


def begin_sqlite_transaction(connection: Connection) -> None:
    """Emit ``BEGIN`` on a SQLite connection unless a transaction is already open.

    Args:
        connection: A connection of a SQLite engine.
    """
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is not None and not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN")
