"""Alembic migration scripts (``env.py``, ``versions/``); run them through :mod:`db.migrate`."""
