"""``loupe api-key create | list | revoke``: station keys for the inspection API, from a shell.

The command acts as the system (whoever runs it on the server can already read the database).
``create`` prints the key once: only its digest is stored.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.orm import Session

import db
from db.api_keys import create_api_key, list_api_keys, revoke_api_key
from db.models.api_keys import API_KEY_SCOPES
from db.projects import find_project


def add_api_key_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``api-key`` and its three commands to the ``loupe`` parser."""
    api_key = sub.add_parser("api-key", help="create, list or revoke station API keys")
    commands = api_key.add_subparsers(dest="api_key_command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--project", required=True, help="the project's name (or id)")
    create.add_argument("--station", required=True, help="who uses it, e.g. line-2-camera")
    create.add_argument("--scope", required=True, choices=API_KEY_SCOPES)
    listing = commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--project", help="only this project's keys")
    revoke = commands.add_parser("revoke", help="revoke a key at once (by its number)")
    revoke.add_argument("id", type=int, help="the key's number, as `loupe api-key list` shows")
    for command in (create, listing, revoke):
        command.add_argument("--database-url", help="default: $LOUPE_DATABASE_URL or SQLite")
        command.set_defaults(func=cmd_api_key)


def cmd_api_key(args: argparse.Namespace) -> int:
    """Run one ``loupe api-key`` command; 0 on success, 2 with a message on bad input."""
    engine = db.init_db(args.database_url)
    try:
        with db.make_session_factory(engine)() as session, session.begin():
            return {"create": _create, "list": _list, "revoke": _revoke}[args.api_key_command](
                session, args
            )
    except (LookupError, ValueError) as err:
        print(f"loupe api-key: {err}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def _project_id(session: Session, name_or_id: str) -> int:
    project = find_project(session, name_or_id)
    if project is None:
        known = ", ".join(p.name for p in db.list_projects(session)) or "none yet"
        raise LookupError(f"no project named {name_or_id!r} (projects: {known})")
    return project.id


def _create(session: Session, args: argparse.Namespace) -> int:
    created = create_api_key(
        session,
        project_id=_project_id(session, args.project),
        station=args.station,
        scope=args.scope,
        user=None,
        system=True,
    )
    print(f"API key {created.id} for station {created.station!r} ({created.scope}):")
    print(created.key)
    print("It is shown only now: store it in the station's configuration.")
    return 0


def _list(session: Session, args: argparse.Namespace) -> int:
    project_id = _project_id(session, args.project) if args.project else None
    for row in list_api_keys(session, project_id):
        state = "active" if row.active else f"revoked {row.revoked_at:%Y-%m-%d %H:%M} UTC"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M} UTC" if row.last_used_at else "never"
        print(
            f"{row.id}\t{row.project.name}\t{row.station}\t{row.scope}\tloupe_{row.key_id}_…"
            f"\t{state}\tlast used {used}"
        )
    return 0


def _revoke(session: Session, args: argparse.Namespace) -> int:
    row = revoke_api_key(session, args.id, user=None, system=True)
    print(f"API key {row.id} ({row.station}) revoked.")
    return 0
