"""Command line: ``loupe {worker,demo,report,api,api-key,watch,deliver}`` (or ``python -m loupe``).

Examples:
    loupe worker                  # run queued background jobs until SIGTERM
    loupe worker --once           # run at most one job, then exit
    loupe demo                    # seed the ELPV solar-cell demo into the configured database
    loupe report --project cells --day 2025-03-03 --shift early --out reports/
                                  # write cells-2025-03-03-early.pdf and .csv (for a scheduler)
    loupe api                     # serve the inspection API on port 8502 ($LOUPE_API_PORT)
    loupe api --workers 4         # four API processes (with PostgreSQL)
    loupe watch                   # every project's hot folder that is switched on
    loupe watch --project cells --folder /srv/line-2
                                  # score each image dropped there, then move it
    loupe deliver                 # send verdicts out (webhook, MQTT) without the API
    loupe api-key create --project cells --station line-2 --scope inspect
                                  # a station's key for the inspection API, printed once

The store is ``$LOUPE_DATABASE_URL`` (any SQLAlchemy URL, PostgreSQL included) or SQLite in
``$LOUPE_DATA_DIR``. Fitting and scoring without a database is ``python -m adcore``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from loupe.api_key_commands import add_api_key_parser
from loupe.line_commands import add_line_parsers

#: Shift names of ``loupe report`` (the windows are in :data:`services.shift_report.SHIFTS`).
REPORT_SHIFTS = ("early", "late", "night")


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the background job worker (see :mod:`workers.worker`)."""
    from workers.worker import run_worker

    return run_worker(
        database_url=args.database_url,
        data_dir=args.data_dir,
        models_dir=args.models_dir,
        device=args.device,
        once=args.once,
        max_jobs=args.max_jobs,
        poll_interval=args.poll_interval,
        job_modules=args.job_module,
        parent_pid=args.parent_pid,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Seed the demo project (see :mod:`services.demo`)."""
    from services.demo import main as seed_main

    return seed_main(args.demo_args)


def report_day(text: str) -> date:
    """Parse ``--day`` (``YYYY-MM-DD``); argparse turns the error into exit code 2."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: write it as YYYY-MM-DD, e.g. 2025-03-03"
        ) from None


def cmd_report(args: argparse.Namespace) -> int:
    """Write a shift or day report, PDF and CSV (see :mod:`services.shift_report`).

    Returns:
        0 when both files are written; 2 on an unknown project.
    """
    import db
    from services.shift_report_files import write_shift_report

    engine = db.init_db(args.database_url)
    try:
        factory = db.make_session_factory(engine)
        try:
            pdf, csv = write_shift_report(factory, args.project, args.day, args.shift, args.out)
        except LookupError:
            with factory() as session:
                known = ", ".join(project.name for project in db.list_projects(session))
            print(
                f"loupe report: no project named {args.project!r} "
                f"(projects: {known or 'none yet'}).",
                file=sys.stderr,
            )
            return 2
    finally:
        engine.dispose()
    print(f"Wrote {pdf} and {csv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``loupe`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="loupe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run queued background jobs (training, calibration)")
    worker.add_argument("--once", action="store_true", help="run at most one job, then exit")
    worker.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    worker.add_argument("--database-url", help="default: $LOUPE_DATABASE_URL or SQLite")
    worker.add_argument("--data-dir", help="default: $LOUPE_DATA_DIR or ./data")
    worker.add_argument("--models-dir", help="default: $LOUPE_MODELS_DIR or ./models")
    worker.add_argument("--device", help="torch device (default: CUDA when available)")
    worker.add_argument(
        "--poll-interval", type=float, default=0.5, help="seconds between polls (default 0.5)"
    )
    worker.add_argument(
        "--job-module",
        action="append",
        default=[],
        help="import this module first (it may register more job kinds); repeatable",
    )
    worker.add_argument(
        "--parent-pid",
        type=int,
        metavar="PID",
        help="stop when process PID exits (the app's launcher gives its server's pid; "
        "without it the worker runs until stopped)",
    )
    worker.set_defaults(func=cmd_worker)

    demo = sub.add_parser(
        "demo",
        help="seed the ELPV solar-cell demo project (options: --models-root, --n-test, --device)",
    )
    demo.set_defaults(func=cmd_demo)

    report = sub.add_parser(
        "report",
        help="write a shift or day report (PDF and CSV) of a project",
        description="Write <out>/<project-slug>-<day>[-<shift>].pdf and .csv: KPIs, error rates "
        "with 95%% intervals, missed and overturned parts, who reviewed what. Shifts (UTC): "
        "early 06:00-14:00, late 14:00-22:00, night 22:00-06:00 (ends the next day).",
    )
    report.add_argument("--project", required=True, help="the project's name")
    report.add_argument("--day", required=True, type=report_day, help="YYYY-MM-DD (UTC)")
    report.add_argument(
        "--shift", choices=REPORT_SHIFTS, help="one shift of the day (default: the whole day)"
    )
    report.add_argument("--out", required=True, type=Path, help="folder to write the files to")
    report.add_argument("--database-url", help="default: $LOUPE_DATABASE_URL or SQLite")
    report.set_defaults(func=cmd_report)

    add_line_parsers(sub)
    add_api_key_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``loupe`` command; return its exit code."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":  # its options belong to services.demo's own parser
        args.demo_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
