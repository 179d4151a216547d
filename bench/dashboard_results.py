"""Write ``bench/RESULTS_dashboard.md`` from a run of ``bench/dashboard_queries.py``.

Everything in the file comes from the run's figures (and, with ``--before``, from an earlier
run's ``--json``): nothing is typed in by hand.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import sqlalchemy

TARGET_MS = 200.0
PAGE_TARGET_MS = 1000.0
PAGE = "whole page data (day)"

INTRO = """\
# Dashboard queries at 100,000 reviews, SQLite and PostgreSQL (issue 14, item 5)

Targets: every query the Dashboard page runs <= 200 ms, the whole page's data <= 1 s, on
SQLite and on PostgreSQL. The figures below are written by the benchmark itself
(`--write-results`); nothing is typed in by hand.

Command:

    {command}

The script builds a synthetic project per backend ({images:,} images, 2 model versions, v2 scoring
the newest half, ~3% of passed parts drawn for audit, {reviews:,} reviews of which ~3% undo
rows, 60 days, 6 reviewers) and calls each function {repeats} times, each in a fresh session.
*wall ms* is the median wall time, *CPU ms* the median CPU time of the benchmark process plus,
on PostgreSQL, of its server process (what a call costs when it has a core; 10 ms ticks).
*Whole page data* is one uncached load of the Dashboard page: the cache key
(`data_version`), `services.dashboard_data.dashboard_data` (what the page caches) and the
audit section (the project's audit odds). The shift report's queries run only when a report is
prepared and are timed for one day; `reviewed_outcomes` is not called by the page (tests use
it) and the review queue belongs to the Review page: both are listed for reference.
Lines starting with `+` time the function above together with the statistics computed
from it (Cohen's kappa per reviewer pair, the KS drift test; `+ line_trends`: the decided parts
counted in SQL, then the line's estimates per period and model with their intervals, 4,000
posterior draws per group, and the load). The page runs `line_trends` for the period chosen
(week by default): one of its three rows per load. The page calls `pair_label_tables`
(+ `agreement_from_tables`) and `good_part_scores(ends)` + `score_drift`; `second_opinions`,
`pairwise_agreement` and the full `good_part_scores` are the ones it called before.
"""


def machine_note(run: dict[str, Any]) -> str:
    """Where and when the run happened, and whether the machine was shared."""
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    load_before = ", ".join(f"{value:.1f}" for value in run["load_before"])
    load_after = ", ".join(f"{value:.1f}" for value in run["load_after"])
    shared = run.get("shared")
    if shared is None:
        sharing = ""
    elif shared:
        sharing = f" **Shared machine**: {shared}."
    else:
        sharing = " No other benchmark was running (`pgrep -f run_detectors` found nothing)."
    lines = [
        f"Run {run['started']} UTC on {platform.node() or 'this machine'} "
        f"({cores} cores, {platform.machine()}), Python {platform.python_version()}, "
        f"SQLAlchemy {sqlalchemy.__version__}; load average {load_before} before and "
        f"{load_after} after the run.{sharing}"
    ]
    if run.get("note"):
        lines.append(run["note"])
    return "\n\n".join(lines)


def _row_index(run: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    if run is None:
        return {}
    return {
        (result["backend"], row["name"]): row for result in run["results"] for row in result["rows"]
    }


def backend_table(result: dict[str, Any], before: dict[tuple[str, str], dict[str, Any]]) -> str:
    """One backend's table (with the "before" columns when an earlier run is given)."""
    backend = result["backend"]
    header = "| function | rows | wall ms (median / max) | CPU ms |"
    rule = "|---|---:|---:|---:|"
    if before:
        header += " before: wall ms | before: CPU ms |"
        rule += "---:|---:|"
    header += " target met (wall) |"
    rule += ":---:|"
    lines = [header, rule]
    for row in result["rows"]:
        target = PAGE_TARGET_MS if row["name"] == PAGE else TARGET_MS
        line = (
            f"| {row['name'].strip()} | {row['rows']:,} | "
            f"{row['wall_ms']:.0f} / {row['max_wall_ms']:.0f} | {row['cpu_ms']:.0f} |"
        )
        if before:
            old = before.get((backend, row["name"]))
            line += f" {old['wall_ms']:.0f} | {old['cpu_ms']:.0f} |" if old else " (not timed) | |"
        name = row["name"].strip()
        reference = name.startswith("reviewed_outcomes") or name.startswith("review_queue")
        met = "yes" if row["wall_ms"] <= target else "no"
        line += f" {met}{' (reference)' if reference or name == 'queue_size' else ''} |"
        lines.append(line)
    build = result.get("build_seconds")
    built = f", database built in {build:.0f} s" if build else ""
    return f"### {backend} ({result['server_version']}{built})\n\n" + "\n".join(lines) + "\n"


def page_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows the Dashboard page runs (not the reference ones, not the shift report's)."""
    skipped = ("reviewed_outcomes", "review_queue", "queue_size", "shift report", "build_shift")
    earlier = ("second_opinions", "good_part_scores")  # what the page called before
    rows, previous = [], ""
    for row in result["rows"]:
        name = row["name"].strip()
        if not name.startswith("+"):
            previous = name
        if name.startswith(skipped) or name == PAGE or previous in earlier:
            continue
        rows.append(row)
    return rows


def verdict(result: dict[str, Any]) -> str:
    """Whether the two targets were met on one backend, with the figures that decide it."""
    rows = page_rows(result)
    slowest = max(rows, key=lambda row: row["wall_ms"])
    over = [row for row in rows if row["wall_ms"] > TARGET_MS]
    page = next(row for row in result["rows"] if row["name"] == PAGE)
    queries = (
        f"met (slowest: {slowest['name'].strip()}, {slowest['wall_ms']:.0f} ms)"
        if not over
        else "**not met**: "
        + ", ".join(f"{row['name'].strip()} {row['wall_ms']:.0f} ms" for row in over)
    )
    whole = "met" if page["wall_ms"] <= PAGE_TARGET_MS else "**not met**"
    return (
        f"- **{result['backend']}**: every page query <= {TARGET_MS:.0f} ms: {queries}; "
        f"whole page <= {PAGE_TARGET_MS / 1000:.0f} s: {whole} ({page['wall_ms']:.0f} ms)."
    )


def write_results(run: dict[str, Any], before_run: dict[str, Any] | None, path: Path) -> Path:
    """Write the results file for ``run`` (and ``before_run``, an earlier run's figures)."""
    command = ".venv/bin/python bench/dashboard_queries.py " + " ".join(run["argv"])
    parts = [
        INTRO.format(
            command=command.strip(),
            images=run["images"],
            reviews=run["reviews"],
            repeats=run["repeats"],
        ),
        "## Machine\n\n" + machine_note(run) + "\n",
    ]
    before = _row_index(before_run)
    if before_run is not None:
        loads = ", ".join(f"{value:.1f}" for value in before_run["load_before"])
        shared = f"; **shared machine**: {before_run['shared']}" if before_run.get("shared") else ""
        parts.append(
            "## Before\n\nThe *before* columns are the same script's run on the code before "
            f"this change (`bench/dashboard_before.json`, {before_run['started']} UTC, load "
            f"average {loads}{shared}). Functions the page did not call then are not timed.\n"
        )
    parts.append(
        "## Targets\n\nMedian wall times of the calls the page makes (the `+` lines where the "
        "page computes statistics; reference rows and the shift report left out):\n\n"
        + "\n".join(verdict(result) for result in run["results"])
        + "\n"
    )
    parts.append("## Results\n")
    parts.extend(backend_table(result, before) for result in run["results"])
    path.write_text("\n".join(parts))
    return path
