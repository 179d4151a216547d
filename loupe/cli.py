"""Command line: ``loupe {worker,demo}`` (also ``python -m loupe ...``).

Examples:
    loupe worker                  # run queued background jobs until SIGTERM
    loupe worker --once           # run at most one job, then exit
    loupe demo                    # seed the ELPV solar-cell demo into the configured database

The store is ``$LOUPE_DATABASE_URL`` (any SQLAlchemy URL, PostgreSQL included) or SQLite in
``$LOUPE_DATA_DIR``. Fitting and scoring without a database is ``python -m adcore``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


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
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Seed the demo project (see :mod:`services.demo`)."""
    from services.demo import main as seed_main

    return seed_main(args.demo_args)


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
    worker.set_defaults(func=cmd_worker)

    demo = sub.add_parser(
        "demo",
        help="seed the ELPV solar-cell demo project (options: --models-root, --n-test, --device)",
    )
    demo.set_defaults(func=cmd_demo)
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
