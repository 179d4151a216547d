"""Alembic environment for Loupe, driven by :mod:`db.migrate` (no ``alembic.ini``).

Online mode uses the connection that :func:`db.migrate.alembic_config` put in
``config.attributes["connection"]`` (already inside the migration transaction); without one it
connects to ``sqlalchemy.url`` or ``$LOUPE_DATABASE_URL``. Offline mode prints SQL for the
dialect of that URL.
"""

from __future__ import annotations

from typing import Any

from alembic import context

import db.models  # noqa: F401  (registers every table on Base.metadata)
from db.base import Base
from db.settings import database_url

config = context.config
target_metadata = Base.metadata


def _configure_and_run(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: rebuild tables instead
        compare_type=True,
        **options,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Print the migration SQL for the configured URL's dialect."""
    url = config.get_main_option("sqlalchemy.url") or database_url()
    _configure_and_run(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})


def run_migrations_online() -> None:
    """Run the migrations on a live database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection=connection)
        return
    from db.engine import create_engine_for_url
    from db.migrate import migration_connection

    engine = create_engine_for_url(config.get_main_option("sqlalchemy.url") or None)
    try:
        with migration_connection(engine) as own_connection:
            _configure_and_run(connection=own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
