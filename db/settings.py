"""Where Loupe keeps its data: the data directory and the database URL.

Both come from the environment so that a deployment can move them without code changes:

* ``LOUPE_DATA_DIR``: the data directory (default ``./data``, resolved against the current
  working directory when first read). Images live under ``<data dir>/images/``.
* ``LOUPE_DATABASE_URL``: any SQLAlchemy URL. When unset, Loupe uses the SQLite file
  ``<data dir>/loupe.db``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL

DATA_DIR_ENV = "LOUPE_DATA_DIR"
DATABASE_URL_ENV = "LOUPE_DATABASE_URL"
DEFAULT_DATA_DIR = "./data"
SQLITE_FILE_NAME = "loupe.db"


def data_dir() -> Path:
    """Return the absolute data directory (not created here).

    Returns:
        ``$LOUPE_DATA_DIR`` or ``./data``, made absolute.
    """
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()


def database_url() -> str:
    """Return the database URL to use.

    Returns:
        ``$LOUPE_DATABASE_URL`` when set, else a SQLite URL for ``<data dir>/loupe.db``.
    """
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    sqlite_url = URL.create("sqlite", database=str(data_dir() / SQLITE_FILE_NAME))
    return sqlite_url.render_as_string(hide_password=False)
