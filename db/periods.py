"""Reporting periods (UTC days and ISO weeks) for the dashboard, in Python and in SQL.

In Python, timestamps are selected *raw* (:func:`raw_timestamp`) and turned into period starts
through a per-day memo (:func:`period_starts`). Where a query should group by period itself
(so that only one row per period comes back), :func:`sql_period_start` is the period's first
day as a SQL expression; SQL date functions differ per backend, so it is written for each
supported dialect (SQLite and PostgreSQL) and refuses to compile on any other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Date, DateTime, String, type_coerce
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

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


class PeriodStartSQL(FunctionElement[date]):
    """First day (a ``DATE``) of the UTC period of a timestamp column, in SQL (see subclasses).

    One subclass per period, so that the period is part of SQLAlchemy's statement cache key.
    """

    type = Date()
    inherit_cache = True
    period = "day"


class DayStartSQL(PeriodStartSQL):
    """The UTC day of a timestamp column."""

    inherit_cache = True
    name = "day_start"
    period = "day"


class WeekStartSQL(PeriodStartSQL):
    """The first day (Monday) of the ISO week of a timestamp column, in UTC."""

    inherit_cache = True
    name = "week_start"
    period = "week"


class HourStartSQL(FunctionElement[datetime]):
    """The start of the UTC hour of a timestamp column, in SQL (a naive UTC timestamp)."""

    type = DateTime()
    inherit_cache = True
    name = "hour_start"


def sql_hour_start(column: Any) -> HourStartSQL:
    """The start of the UTC hour of ``column`` as a SQL expression (SQLite and PostgreSQL).

    Read it with :func:`raw_timestamp` and :func:`utc_datetime`: SQLite gives UTC text, a
    PostgreSQL driver a naive timestamp in UTC.
    """
    return HourStartSQL(column)


@compiles(HourStartSQL, "sqlite")
def _hour_start_sqlite(element: HourStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d %H:00:00', {compiler.process(element.clauses, **kw)})"


@compiles(HourStartSQL, "postgresql")
def _hour_start_postgresql(element: HourStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"date_trunc('hour', ({column}) AT TIME ZONE 'UTC')"


@compiles(HourStartSQL)
def _hour_start_other(element: HourStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"sql_hour_start is written for SQLite and PostgreSQL, not {compiler.dialect.name}"
    )


def sql_period_start(column: Any, period: str) -> PeriodStartSQL:
    """The first day of the UTC day or ISO week (Monday) of ``column``, as a SQL expression.

    Equal to :func:`period_start` of the stored moment. Compiles for SQLite (which stores UTC
    text) and PostgreSQL (``timestamptz``, read in UTC whatever the session's time zone).

    Raises:
        ValueError: On an unknown period.
    """
    check_period(period)
    return DayStartSQL(column) if period == "day" else WeekStartSQL(column)


@compiles(PeriodStartSQL, "sqlite")
def _period_start_sqlite(element: PeriodStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    if element.period == "day":
        return f"date({column})"
    return f"date({column}, '-6 days', 'weekday 1')"  # the Monday on or before the day


@compiles(PeriodStartSQL, "postgresql")
def _period_start_postgresql(element: PeriodStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(date_trunc('{element.period}', ({column}) AT TIME ZONE 'UTC') AS DATE)"


@compiles(PeriodStartSQL)
def _period_start_other(element: PeriodStartSQL, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"sql_period_start is written for SQLite and PostgreSQL, not {compiler.dialect.name}"
    )


def require_aware(**moments: datetime | None) -> None:
    """Refuse a naive bound of a period (``since=...``, ``until=...``); ``None`` is fine.

    Raises:
        ValueError: Naming the first bound that is a naive datetime.
    """
    for name, moment in moments.items():
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}.")
