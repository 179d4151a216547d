"""Reporting periods (UTC days and ISO weeks) for the dashboard, computed in Python.

Grouping by date happens in Python to stay portable (SQL date functions differ per backend).
To keep that cheap over tens of thousands of rows, timestamps are selected *raw*
(:func:`raw_timestamp`) and turned into period starts through a per-day memo
(:func:`period_starts`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import String, type_coerce

Period = Literal["day", "week"]
PERIODS: tuple[str, ...] = ("day", "week")


def check_period(period: str) -> None:
    """Raise ``ValueError`` unless ``period`` is ``"day"`` or ``"week"``."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}.")


def period_start(moment: datetime, period: Period = "day") -> date:
    """Return the first day of the UTC day or ISO week (Monday) that contains ``moment``."""
    check_period(period)
    day = _utc_date(moment)
    return day if period == "day" else day - timedelta(days=day.weekday())


def period_starts(period: str) -> Callable[[str | datetime], date]:
    """Return a memoised ``timestamp -> first day of its UTC period`` (validating ``period``).

    The timestamps come from :func:`raw_timestamp`: SQLite gives its stored UTC text
    (``YYYY-MM-DD HH:MM:SS...``), other drivers a datetime.
    """
    check_period(period)
    cache: dict[object, date] = {}

    def start_of(moment: str | datetime) -> date:
        key = moment[:10] if isinstance(moment, str) else moment
        start = cache.get(key)
        if start is None:
            day = date.fromisoformat(key) if isinstance(key, str) else _utc_date(key)
            start = day if period == "day" else day - timedelta(days=day.weekday())
            cache[key] = start
        return start

    return start_of


def raw_timestamp(column: Any) -> Any:
    """Select a timestamp column without the per-row conversion to an aware datetime.

    Over tens of thousands of rows that conversion costs more than the query itself; a
    period only needs the UTC date, which :func:`period_starts` reads from either form.
    """
    return type_coerce(column, String)


def utc_datetime(moment: str | datetime) -> datetime:
    """Turn a :func:`raw_timestamp` value back into an aware UTC datetime (cheaply).

    SQLite gives its stored UTC text (``YYYY-MM-DD HH:MM:SS[.ffffff]``), other drivers a
    datetime; the result equals what :class:`db.base.UTCDateTime` would have returned.
    """
    if isinstance(moment, str):
        return datetime.fromisoformat(moment).replace(tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc_date(moment: datetime) -> date:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date()
