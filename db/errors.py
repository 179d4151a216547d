"""Errors raised by the storage layer."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of the errors raised by :mod:`db`."""


class AppendOnlyError(StorageError):
    """An UPDATE or DELETE of an append-only row (a review) was attempted."""


class MigrationError(StorageError):
    """A schema migration left the database inconsistent (e.g. broken foreign keys)."""


class ConflictError(StorageError):
    """A change conflicts with what is stored (a duplicate name, a row another writer changed)."""
