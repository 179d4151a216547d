"""Migration revisions, numbered ``NNNN_<slug>.py``; alembic skips this file."""
