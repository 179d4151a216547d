"""The workbench's database sessions: one session factory per process, and transactions.

Not a page. ``app.py``, the pages and their helper modules (such as :mod:`pages.heatmap_panel`
and :mod:`pages.tab_state`) import :func:`session_factory` and :func:`transaction` from here; it
imports no other page module, so any of them can open a transaction without an import circle.

The session factory is cached with ``st.cache_resource`` (keyed by the database URL), so it is
shared by all browser sessions of the server process; it is thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import streamlit as st

import db

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["session_factory", "session_factory_for", "transaction"]


@st.cache_resource(show_spinner=False)
def session_factory_for(url: str) -> sessionmaker[Session]:
    """Migrate the database at ``url`` once per process and return its session factory."""
    engine = db.init_db(url)
    return db.make_session_factory(engine)


def session_factory() -> sessionmaker[Session]:
    """The session factory of the configured database (``$LOUPE_DATABASE_URL`` / data dir)."""
    return session_factory_for(db.database_url())


@contextmanager
def transaction() -> Iterator[Session]:
    """A session inside a transaction: committed on success, rolled back on error.

    An integrity conflict leaves as :class:`db.ConflictError` (one of
    :data:`pages.action_feedback.ACTION_ERRORS`).
    """
    with db.transaction(session_factory()) as session:
        yield session
