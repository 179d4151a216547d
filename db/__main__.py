"""``python -m db``: alembic commands for Loupe's database, with no ``alembic.ini``.

Examples::

    python -m db upgrade                   # to head ($LOUPE_DATABASE_URL or the SQLite file)
    python -m db downgrade base
    python -m db current
    python -m db check                     # do the models match the migrations?
    python -m db revision -m "add x" --autogenerate
    python -m db sql --url postgresql://host/loupe   # print the upgrade SQL, run nothing
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from db.engine import create_engine_for_url
from db.migrate import alembic_config, downgrade, migration_connection, upgrade
from db.settings import database_url


def main(argv: Sequence[str] | None = None) -> int:
    """Run one migration command; return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: $LOUPE_DATABASE_URL or SQLite)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("upgrade").add_argument("revision", nargs="?", default="head")
    commands.add_parser("downgrade").add_argument("revision")
    commands.add_parser("current")
    commands.add_parser("history")
    commands.add_parser("check")
    commands.add_parser("sql").add_argument("revision", nargs="?", default="head")
    revision = commands.add_parser("revision")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true")
    arguments = parser.parse_args(argv)

    url = arguments.url or database_url()
    if arguments.command == "sql":
        command.upgrade(alembic_config(url=url, output=sys.stdout), arguments.revision, sql=True)
        return 0
    engine = create_engine_for_url(url)
    try:
        if arguments.command == "upgrade":
            upgrade(engine, arguments.revision)
        elif arguments.command == "downgrade":
            downgrade(engine, arguments.revision)
        else:
            with migration_connection(engine) as connection:
                _run_inspecting_command(alembic_config(connection), arguments)
    finally:
        engine.dispose()
    return 0


def _run_inspecting_command(config: Config, arguments: argparse.Namespace) -> None:
    if arguments.command == "current":
        command.current(config)
    elif arguments.command == "history":
        command.history(config)
    elif arguments.command == "check":
        command.check(config)
    else:
        command.revision(
            config,
            message=arguments.message,
            autogenerate=arguments.autogenerate,
            rev_id=_next_revision_id(config),
        )


def _next_revision_id(config: Config) -> str:
    """Number revisions 0001, 0002, ... like the hand-written first one."""
    heads = ScriptDirectory.from_config(config).get_heads()
    numbers = [int(head) for head in heads if head.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


if __name__ == "__main__":
    raise SystemExit(main())
