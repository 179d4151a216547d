"""``loupe api | watch | deliver``: the line-integration processes, from a shell.

* ``loupe api`` serves the inspection API (:mod:`api`); ``--workers N`` runs N uvicorn worker
  processes, each loading the model once and each sending the outbox (safe on one database).
* ``loupe watch`` takes parts from hot folders: one project's (``--project``, its configured
  folder or ``--folder``) or every project's whose hot folder is switched on.
* ``loupe deliver`` sends the outbox (webhook, MQTT) without serving the API.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

DEFAULT_API_PORT = 8502
API_PORT_ENV = "LOUPE_API_PORT"


def add_line_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``api``, ``watch`` and ``deliver`` to the ``loupe`` parser."""
    api = sub.add_parser(
        "api",
        help="serve the inspection API for camera stations (port $LOUPE_API_PORT or 8502)",
    )
    api.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only); for camera "
        "stations on the plant network: --host 0.0.0.0 (all interfaces) or this machine's "
        "address there, plain HTTP unless a reverse proxy terminates HTTPS in front",
    )
    api.add_argument("--port", type=int, help="default: $LOUPE_API_PORT or 8502")
    api.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1); use PostgreSQL for more than one",
    )
    api.set_defaults(func=cmd_api)

    watch = sub.add_parser(
        "watch",
        help="score every image dropped into a hot folder (moved to processed/ or refused/)",
        description="Without --project: every project whose hot folder is switched on (set on "
        "the Line page). With --project: that project's configured folder, or --folder.",
    )
    watch.add_argument("--project", help="the project's name (or id); default: every project")
    watch.add_argument("--folder", type=Path, help="watch this folder instead of the configured")
    watch.add_argument("--database-url", help="default: $LOUPE_DATABASE_URL or SQLite")
    watch.set_defaults(func=cmd_watch)

    deliver = sub.add_parser(
        "deliver",
        help="send verdicts and labels to the projects' webhooks and MQTT brokers",
        description="`loupe api` does this already; run this when the API is not served.",
    )
    deliver.add_argument("--database-url", help="default: $LOUPE_DATABASE_URL or SQLite")
    deliver.set_defaults(func=cmd_deliver)


def cmd_api(args: argparse.Namespace) -> int:
    """Serve :func:`api.app.create_app` with uvicorn until stopped."""
    import uvicorn

    port = args.port or int(os.environ.get(API_PORT_ENV) or DEFAULT_API_PORT)
    if args.workers < 1:
        print("loupe api: --workers is 1 or more.", file=sys.stderr)
        return 2
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=port,
        workers=args.workers,
        log_level="info",
    )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Watch hot folders until stopped (see :mod:`services.hot_folder`)."""
    import db
    from db.models import Project
    from db.projects import find_project, list_projects
    from services.hot_folder import HotFolder
    from services.line_settings import hot_folder_setting
    from services.scoring.runtime import configured_runtime, detector_loader
    from services.server_folders import ROOTS_ENV, ServerFolderError

    engine = db.init_db(args.database_url)
    factory = db.make_session_factory(engine)
    folders: list[tuple[int, str, Path]] = []
    with factory() as session:
        if args.project is not None:
            project = find_project(session, args.project)
            if project is None:
                print(f"loupe watch: no project named {args.project!r}.", file=sys.stderr)
                return 2
            chosen: list[Project] = [project]
        else:
            chosen = list(list_projects(session))
        for project in chosen:
            setting = hot_folder_setting(project)
            if args.folder is not None and args.project is not None:
                folders.append((project.id, project.name, args.folder))
            elif setting.enabled and setting.folder:
                folders.append((project.id, project.name, Path(setting.folder)))
            elif args.project is not None:
                print(
                    f"loupe watch: {project.name} has no hot folder switched on: set one on the "
                    "Line page, or give --folder.",
                    file=sys.stderr,
                )
                return 2
    if not folders:
        print("loupe watch: no project has a hot folder switched on.", file=sys.stderr)
        return 2
    detector_for = detector_loader(configured_runtime(), cache_size=2 * len(folders))
    watched: list[tuple[str, HotFolder]] = []
    for project_id, name, path in folders:  # every folder is checked before any is watched
        try:
            hot = HotFolder(factory, project_id=project_id, folder=path, detector_for=detector_for)
        except ServerFolderError as err:
            print(
                f"loupe watch: {name}: {err} An admin adds roots with {ROOTS_ENV} "
                f"(absolute paths separated by {os.pathsep!r}).",
                file=sys.stderr,
            )
            engine.dispose()
            return 2
        except OSError as err:
            print(f"loupe watch: {name}: cannot use {path}: {err}", file=sys.stderr)
            engine.dispose()
            return 2
        watched.append((name, hot))
    stop = threading.Event()
    threads = []
    for name, hot in watched:
        print(f"Watching {hot.folder} for {name} (Ctrl-C stops).", flush=True)

        def report(outcome, name: str = name) -> None:
            why = f": {outcome.reason}" if outcome.reason else ""
            print(f"[{name}] {outcome.name}: {outcome.status}{why}", flush=True)

        thread = threading.Thread(target=hot.run, args=(stop, report), daemon=True)
        thread.start()
        threads.append(thread)
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        engine.dispose()
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """Send the outbox until stopped (see :mod:`workers.outbound_delivery`)."""
    import db
    from workers.outbound_delivery import run_delivery

    engine = db.init_db(args.database_url)
    stop = threading.Event()
    print("Sending verdicts and labels out (Ctrl-C stops).", flush=True)
    try:
        run_delivery(db.make_session_factory(engine), stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        engine.dispose()
    return 0
