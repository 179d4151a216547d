"""Time the dashboard and review-queue queries on a large synthetic project (SQLite).

Builds a temporary database with ~30,000 images, two model versions (v1 scored every image,
v2 the newest half), and 100,000 reviews (about 3% of them undo rows) spread over 60 days,
then times each query function and prints a table. Target: <= 200 ms per call. The reviews are
bulk-inserted (which skips the ORM's upkeep of ``images.current_review_id``), so the build
ends with :func:`db.review_log.rebuild_current_reviews`. ``--keep`` on a database built by an
older version migrates it first (the 0003 backfill). Results: ``bench/RESULTS_dashboard.md``.

    .venv/bin/python bench/dashboard_queries.py [--images 30000] [--reviews 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
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
    dashboard,
    init_db,
    make_session_factory,
)
from db.review_log import rebuild_current_reviews  # noqa: E402
from db.review_queue import queue_size, review_queue  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
REVIEWERS = 6
UNDO_SHARE = 0.03


def build(factory: sessionmaker[Session], n_images: int, n_reviews: int, seed: int = 0) -> int:
    """Fill the database; return the project id."""
    rng = random.Random(seed)
    with factory() as session, session.begin():
        project = Project(name="bench", object_name="part", defect_types=["scratch"])
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
            mine.append(review_id)
        session.execute(insert(Review), review_rows)
        rebuild_current_reviews(session)  # bulk inserts skip the ORM's upkeep of the column
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
        "created_at": at,
    }


def time_calls(factory: sessionmaker[Session], project_id: int, repeats: int) -> list[tuple]:
    """Return (name, rows, median wall ms, median CPU ms, max wall ms) for each function.

    CPU time (of this process) is reported next to wall time because the machine may be
    shared: it is what the query costs when it has a core to itself.
    """
    calls: list[tuple[str, Callable[[Session], object]]] = [
        ("reviewed_outcomes", lambda s: dashboard.reviewed_outcomes(s, project_id)),
        ("error_rates_over_time(day)", lambda s: dashboard.error_rates_over_time(s, project_id)),
        (
            "error_rates_over_time(week)",
            lambda s: dashboard.error_rates_over_time(s, project_id, period="week"),
        ),
        ("review_counts", lambda s: dashboard.review_counts(s, project_id)),
        ("confusion", lambda s: dashboard.confusion(s, project_id)),
        ("score_distribution", lambda s: dashboard.score_distribution(s, project_id).points),
        ("throughput(day)", lambda s: dashboard.throughput(s, project_id)),
        ("review_queue(limit=50)", lambda s: review_queue(s, project_id, limit=50)),
        ("review_queue(all)", lambda s: review_queue(s, project_id)),
        ("queue_size", lambda s: queue_size(s, project_id)),
        ("data_version (cache key)", lambda s: dashboard.data_version(s, project_id)),
    ]
    table = []
    for name, call in calls:
        wall, cpu, size = [], [], 0
        for _ in range(repeats):
            with factory() as session:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = call(session)
                wall.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
            size = len(result) if hasattr(result, "__len__") else 1
        table.append((name, size, statistics.median(wall), statistics.median(cpu), max(wall)))
    return table


def main(argv: list[str] | None = None) -> int:
    """Build the database, time the queries, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the database at this path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        reuse = path.exists()
        engine = init_db(f"sqlite:///{path}")
        factory = make_session_factory(engine)
        start = time.perf_counter()
        project_id = 1 if reuse else build(factory, args.images, args.reviews)
        if not reuse:
            print(
                f"built {args.images:,} images / {args.reviews:,} reviews "
                f"in {time.perf_counter() - start:.1f} s"
            )
        rows = time_calls(factory, project_id, args.repeats)
        engine.dispose()
    print(f"{'function':<30} {'rows':>7} {'wall ms':>8} {'cpu ms':>7} {'max wall':>9}")
    for name, size, wall, cpu, worst in rows:
        print(f"{name:<30} {size:>7,} {wall:>8.0f} {cpu:>7.0f} {worst:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
