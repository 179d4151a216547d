"""Time the Dashboard's queries on a large synthetic project, on SQLite and PostgreSQL.

Builds a database with ~30,000 images, two model versions (v1 scored every image, v2 the
newest half; ~3% of passed parts drawn for audit), and 100,000 reviews (about 3% of them undo
rows, defect labels with a defect type) spread over 60 days, then times every query the
Dashboard page runs (:func:`services.dashboard_data.dashboard_data`, the audit section, the
shift report of one day, the review queue) and the whole page's data, and prints a table per
backend. Targets: <= 200 ms per query, <= 1 s for the page's data (wall, median of the calls).

The reviews are bulk-inserted (which skips the ORM's upkeep of ``images.current_review_id``),
so the build ends with :func:`db.review_log.rebuild_current_reviews`. PostgreSQL is a
throwaway cluster (``tests/postgres_cluster.py``; ``make postgres`` installs it) unless
``--postgres-url`` names a server; its tables are ``ANALYZE``d after the build, as autovacuum
would. ``--write-results`` writes ``bench/RESULTS_dashboard.md`` (``bench/dashboard_results.py``);
``--json`` saves the figures, and ``--before`` adds an earlier run's JSON as "before" columns.

    .venv/bin/python bench/dashboard_queries.py [--backends sqlite,postgresql] [--write-results]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from db import (  # noqa: E402
    Image,
    ModelVersion,
    Prediction,
    Project,
    Review,
    User,
    audits,
    dashboard,
    dashboard_views,
    init_db,
    make_session_factory,
    shift_report_queries,
)
from db.loop_parts import loop_part_counts  # noqa: E402
from db.model_families import active_version_id  # noqa: E402
from db.projects import get_project  # noqa: E402
from db.review_log import rebuild_current_reviews, rebuild_reviewer_labels  # noqa: E402
from db.review_queue import queue_size, review_queue  # noqa: E402
from services import dashboard_stats  # noqa: E402
from services.dashboard_data import dashboard_data  # noqa: E402
from services.line_trends import line_trends  # noqa: E402
from services.project_settings import audit_odds  # noqa: E402
from services.shift_report import build_shift_report, report_window  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
REVIEWERS = 6
UNDO_SHARE = 0.03
AUDIT_SHARE = 0.03
DEFECT_TYPES = ("scratch", "crack", "stain")


def build(factory: sessionmaker[Session], n_images: int, n_reviews: int, seed: int = 0) -> int:
    """Fill the database; return the project id."""
    rng = random.Random(seed)
    with factory() as session, session.begin():
        project = Project(name="bench", object_name="part", defect_types=list(DEFECT_TYPES))
        session.add(project)
        users = [User(name=f"reviewer-{i}", role="inspector", password_hash="x") for i in range(6)]
        session.add_all(users)
        session.flush()
        versions = [
            ModelVersion(
                project_id=project.id,
                version=number,
                kind="patchcore",
                artifact_path=f"models/bench/v{number}",
                threshold=1.0,
                status=status,
            )
            for number, status in ((1, "retired"), (2, "active"))
        ]
        session.add_all(versions)
        session.flush()
        project.active_model_version_id = versions[1].id
        project_id, user_ids = project.id, [user.id for user in users]
        version_ids = [version.id for version in versions]

        image_rows, defects = [], set()
        for i in range(1, n_images + 1):
            digest = hashlib.sha256(str(i).encode()).hexdigest()
            at = START + timedelta(seconds=DAYS * 86400 * i / n_images)
            image_rows.append(
                {
                    "id": i,
                    "project_id": project_id,
                    "sha256": digest,
                    "stored_path": f"images/{digest[:2]}/{digest}.png",
                    "original_name": f"part-{i}.png",
                    "width": 64,
                    "height": 64,
                    "size_bytes": 1000,
                    "source": "upload",
                    "created_at": at,
                }
            )
            if rng.random() < 0.15:
                defects.add(i)
        session.execute(insert(Image), image_rows)

        prediction_rows = []
        for row in image_rows:
            i, at = row["id"], row["created_at"]
            for version_id in version_ids if i > n_images // 2 else version_ids[:1]:
                mean = 1.4 if i in defects else 0.6
                score = max(0.0, rng.gauss(mean, 0.25))
                prediction_rows.append(
                    {
                        "image_id": i,
                        "model_version_id": version_id,
                        "score": score,
                        "threshold": 1.0,
                        "verdict": "defect" if score >= 1.0 else "good",
                        "audit": score < 1.0 and rng.random() < AUDIT_SHARE,
                        "created_at": at,
                    }
                )
        session.execute(insert(Prediction), prediction_rows)

        reviewed = list(range(1, int(n_images * 0.85) + 1))
        review_rows: list[dict] = []
        counting: dict[int, list[int]] = {}  # reviewer -> their counting review ids, in order
        for review_id in range(1, n_reviews + 1):
            reviewer = rng.choice(user_ids)
            at = START + timedelta(seconds=DAYS * 86400 * review_id / n_reviews)
            mine = counting.setdefault(reviewer, [])
            if mine and rng.random() < UNDO_SHARE:
                target = mine.pop()
                image_id = review_rows[target - 1]["image_id"]
                review_rows.append(_review(review_id, image_id, reviewer, None, at, target))
                continue
            image_id = rng.choice(reviewed)
            label = "defect" if image_id in defects else "good"
            review_rows.append(_review(review_id, image_id, reviewer, label, at, None))
            review_rows[-1]["seconds_spent"] = rng.uniform(2, 30)
            if label == "defect":
                review_rows[-1]["defect_type"] = rng.choice(DEFECT_TYPES)
            mine.append(review_id)
        session.execute(insert(Review), review_rows)
        rebuild_current_reviews(session)  # bulk inserts skip the ORM's upkeep of the column
        rebuild_reviewer_labels(session)  # and of the reviewer labels
    return project_id


def _review(
    review_id: int,
    image_id: int,
    reviewer: int,
    label: str | None,
    at: datetime,
    undoes: int | None,
) -> dict:
    return {
        "id": review_id,
        "image_id": image_id,
        "reviewer_id": reviewer,
        "label": label,
        "is_undo": undoes is not None,
        "supersedes_id": undoes,
        "seconds_spent": None,
        "defect_type": None,
        "created_at": at,
    }


Call = Callable[[Session], object]
PAGE = "whole page data (day)"
REPORT_DAY = (START + timedelta(days=DAYS // 2)).date()


def page_calls(project_id: int, active_id: int) -> list[tuple[str, Call]]:
    """Every query the Dashboard page runs on a load, one entry per function."""
    window = report_window(REPORT_DAY)
    return [
        ("data_version (cache key)", lambda s: dashboard.data_version(s, project_id)),
        ("active_version_id", lambda s: [active_version_id(s, project_id)]),
        ("error_rates_over_time(day)", lambda s: dashboard.error_rates_over_time(s, project_id)),
        (
            "error_rates_over_time(week)",
            lambda s: dashboard.error_rates_over_time(s, project_id, period="week"),
        ),
        ("review_counts", lambda s: dashboard.review_counts(s, project_id)),
        ("confusion", lambda s: dashboard.confusion(s, project_id)),
        ("score_distribution", lambda s: dashboard.score_distribution(s, project_id).points),
        ("throughput(day)", lambda s: dashboard.throughput(s, project_id)),
        ("throughput(week)", lambda s: dashboard.throughput(s, project_id, period="week")),
        ("loop_part_counts(day) (decided parts)", lambda s: loop_part_counts(s, project_id)),
        ("+ line_trends(week) (the default)", lambda s: line_trends(s, project_id, "week").rates),
        ("+ line_trends(day)", lambda s: line_trends(s, project_id, "day").rates),
        (
            "loop_part_counts(hour) (for shifts)",
            lambda s: loop_part_counts(s, project_id, by="hour"),
        ),
        ("+ line_trends(shift)", lambda s: line_trends(s, project_id, "shift").rates),
        ("defect_type_counts", lambda s: dashboard_views.defect_type_counts(s, project_id)),
        ("second_opinions", lambda s: dashboard_views.second_opinions(s, project_id)),
        ("pair_label_tables", lambda s: dashboard_views.pair_label_tables(s, project_id)),
        (
            "+ agreement_from_tables",
            lambda s: dashboard_stats.agreement_from_tables(
                dashboard_views.pair_label_tables(s, project_id)
            ),
        ),
        (
            "good_part_scores(ends) + score_drift",
            lambda s: [
                dashboard_stats.score_drift(
                    dashboard_views.good_part_scores(
                        s, project_id, active_id, ends=dashboard_stats.DRIFT_WINDOW
                    )
                )
            ],
        ),
        (
            "good_part_scores",
            lambda s: dashboard_views.good_part_scores(s, project_id, active_id),
        ),
        (
            "+ score_drift",
            lambda s: [
                dashboard_stats.score_drift(
                    dashboard_views.good_part_scores(s, project_id, active_id)
                )
            ],
        ),
        ("audit_counts (threshold jobs)", lambda s: list(audits.audit_counts(s, project_id))),
        (
            "reviewed_outcomes (not on the page)",
            lambda s: dashboard.reviewed_outcomes(s, project_id),
        ),
        (
            "shift report: scored_counts",
            lambda s: list(shift_report_queries.scored_counts(s, project_id, *window)),
        ),
        (
            "shift report: reviewed_parts",
            lambda s: shift_report_queries.reviewed_parts(s, project_id, *window),
        ),
        (
            "shift report: review_work",
            lambda s: shift_report_queries.review_work(s, project_id, *window),
        ),
        (
            "shift report: audit_counts",
            lambda s: list(audits.audit_counts(s, project_id, since=window[0], until=window[1])),
        ),
        (
            "build_shift_report (one day)",
            lambda s: build_shift_report(s, project_id, REPORT_DAY).parts,
        ),
        ("review_queue(limit=50)", lambda s: review_queue(s, project_id, limit=50)),
        ("review_queue(all)", lambda s: review_queue(s, project_id)),
        ("queue_size", lambda s: [queue_size(s, project_id)]),
    ]


def whole_page(session: Session, project_id: int, period: str = "day") -> list:
    """What one uncached load of the page reads.

    The cache key, the cached data (:func:`services.dashboard_data.dashboard_data`) and the
    audit section, which the page reads outside the cache. The page opens a transaction for
    each; here they share one session, so that PostgreSQL's server CPU is measured too. The
    shift report runs on request only and is timed on its own.
    """
    dashboard.data_version(session, project_id)
    data = dashboard_data(session, project_id, period)
    audit_odds(get_project(session, project_id))  # the audit section's odds
    return list(data)


@contextmanager
def server_cpu(session: Session) -> Iterator[Callable[[], float]]:
    """Measure the PostgreSQL backend's CPU time (ms) of ``session`` (0 on SQLite).

    Reads the server process's ``/proc/<pid>/stat`` (the server runs on this machine);
    resolution is one clock tick (10 ms).
    """
    if session.get_bind().dialect.name != "postgresql":
        yield lambda: 0.0
        return
    pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    tick = os.sysconf("SC_CLK_TCK")

    def ms() -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a server elsewhere (--postgres-url)
            return 0.0
        return (int(fields[11]) + int(fields[12])) * 1000 / tick

    start = ms()
    yield lambda: ms() - start


def time_calls(
    factory: sessionmaker[Session], project_id: int, repeats: int
) -> list[dict[str, object]]:
    """Time every call ``repeats`` times (a fresh session each) and the whole page's data.

    Returns:
        ``{"name", "rows", "wall_ms", "cpu_ms", "max_wall_ms"}`` per function: medians of wall
        time and of CPU time (this process plus, on PostgreSQL, its server process: what the
        call costs when it has a core; wall time includes waiting for one on a shared machine).
    """
    import sklearn.metrics  # noqa: F401  # pairwise_agreement's import: once per app process

    with factory() as session:
        active_id = active_version_id(session, project_id)
    assert active_id is not None
    calls = page_calls(project_id, active_id)
    calls.append((PAGE, lambda s: whole_page(s, project_id)))
    table = []
    for name, call in calls:
        wall, cpu, size = [], [], 0
        for _ in range(repeats):
            with factory() as session, server_cpu(session) as server_ms:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = call(session)
                wall.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000 + server_ms())
            size = len(result) if hasattr(result, "__len__") else 1
        table.append(
            {
                "name": name,
                "rows": size,
                "wall_ms": statistics.median(wall),
                "cpu_ms": statistics.median(cpu),
                "max_wall_ms": max(wall),
            }
        )
    return table


def run_backend(url: str, args: argparse.Namespace) -> dict[str, object]:
    """Build (or reuse) the database at ``url``, time the calls; return the backend's figures."""
    engine = init_db(url)
    factory = make_session_factory(engine)
    with factory() as session:
        reuse = bool(session.scalar(select(func.count(Project.id))))
    build_seconds = None
    if not reuse:
        start = time.perf_counter()
        build(factory, args.images, args.reviews)
        build_seconds = time.perf_counter() - start
        print(
            f"{engine.dialect.name}: built {args.images:,} images / {args.reviews:,} reviews "
            f"in {build_seconds:.1f} s",
            flush=True,
        )
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    with engine.connect() as connection:
        version = connection.execute(
            text(
                "SELECT sqlite_version()"
                if engine.dialect.name == "sqlite"
                else "SHOW server_version"
            )
        ).scalar_one()
    rows = time_calls(factory, 1, args.repeats)
    engine.dispose()
    return {
        "backend": engine.dialect.name,
        "server_version": str(version),
        "build_seconds": build_seconds,
        "rows": rows,
    }


def print_table(result: dict[str, object]) -> None:
    """Print one backend's figures."""
    print(f"\n{result['backend']} {result['server_version']}")
    print(f"{'function':<38} {'rows':>7} {'wall ms':>8} {'cpu ms':>7} {'max wall':>9}")
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(
            f"{row['name']:<38} {row['rows']:>7,} {row['wall_ms']:>8.0f} {row['cpu_ms']:>7.0f} "
            f"{row['max_wall_ms']:>9.0f}"
        )


@contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    """A fresh database: on ``given`` (a server URL) or on a throwaway cluster."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_cluster import external_server, find_postgres_bin_dir, start_cluster

    if given:
        server = external_server(given)
    else:
        bin_dir = find_postgres_bin_dir()
        if bin_dir is None:
            raise SystemExit(
                "PostgreSQL is not installed: run `make postgres` or pass --postgres-url"
            )
        server = start_cluster(bin_dir)
    name, url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(name)
        server.stop()


def other_benchmarks() -> list[str]:
    """Other engineers' benchmarks running now (``pgrep -f run_detectors``), for the note."""
    found = subprocess.run(["pgrep", "-f", "run_detectors"], capture_output=True, text=True)
    return ["bench/run_detectors.py was running"] if found.stdout.strip() else []


def main(argv: list[str] | None = None) -> int:
    """Build the databases, time the queries, print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", type=Path, help="SQLite: build (or reuse) the database here")
    parser.add_argument("--postgres-url", help="a PostgreSQL server (role with CREATEDB)")
    parser.add_argument("--json", type=Path, help="also save the figures as JSON here")
    parser.add_argument("--before", type=Path, help="an earlier run's --json, for 'before'")
    parser.add_argument("--write-results", action="store_true", help="write RESULTS_dashboard.md")
    parser.add_argument("--note", default="", help="a sentence for the results file")
    args = parser.parse_args(argv)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    busy = other_benchmarks()
    results = []
    for backend in backends:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                path = args.keep or Path(tmp) / "bench.db"
                results.append(run_backend(f"sqlite:///{path}", args))
        elif backend == "postgresql":
            with postgres_url(args.postgres_url) as url:
                results.append(run_backend(url, args))
        else:
            parser.error(f"unknown backend {backend!r} (sqlite, postgresql)")
        print_table(results[-1])
    run = {
        "started": started.isoformat(timespec="minutes"),
        "argv": sys.argv[1:] if argv is None else argv,
        "images": args.images,
        "reviews": args.reviews,
        "repeats": args.repeats,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "note": args.note,
        "shared": "; ".join(sorted(set(busy + other_benchmarks()))),
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(run, indent=1, default=str) + "\n")
    if args.write_results:
        from dashboard_results import write_results

        before = json.loads(args.before.read_text()) if args.before else None
        path = write_results(run, before, ROOT / "bench" / "RESULTS_dashboard.md")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
