"""Benchmark: the Dashboard's estimated FNR/FPR against the true rates (issue 26, item 6).

The Dashboard's headline is :func:`services.line_trends.rates_over_time` over the decided parts
(:mod:`db.loop_parts`): the loop's estimate per period and model lineage, sparse periods
merged. This script runs that same function where every label is known and compares each
group's 95% intervals with the group's true rates:

* **The demo's history** (``--demo``): the simulated weeks that ``make demo`` seeds
  (:mod:`services.demo_history`: ELPV cells scored by the demo's PatchCore, audits drawn
  with the project's odds per region, simulated inspectors who label with the ELPV ground
  truth). It is seeded into a temporary database, read back with :func:`db.loop_parts.loop_parts`
  exactly as the Dashboard reads it, and each part's true label comes from its ELPV cell.
  Periods: the Dashboard's weeks (and days), per model lineage.
* **Replays** (``--replay bench/out/replay-*.json``, written by ``bench/replay.py --json``):
  every inspected part with its decision region, audit odds, audit draw, model version and
  true label, and whether the oracle inspector had labelled it by the end. Each replay window
  (50 parts) plays one day; the windows are then grouped by the same function (merged while
  sparse, per model lineage: instant updates and recalibrations are revisions of one model).

The truth of a group: FNR = defects the line passed or auto-accepted / defects; FPR = good
parts sent to a human / good parts. A group's interval *covers* when the true rate lies inside
it. Groups where the truth is undefined (no defect) are left out of the FNR coverage; groups
the Dashboard shows as "not enough parts" are counted separately.

    python bench/rates.py --demo --replay bench/out/replay-magnetic-tile.json \
        --replay bench/out/replay-elpv-mono.json --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adcore.loop_estimate import SEND_STRATA, LoopEstimate, stratum_of  # noqa: E402
from db.loop_parts import LoopPart  # noqa: E402
from services.line_trends import LINE, RatePeriod, rates_over_time  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS_rates.md"
TARGET_COVERAGE = 0.90
WINDOW_DAY = datetime(2026, 1, 5, 12, tzinfo=UTC)
"""Replay window k plays the day WINDOW_DAY + k days (a Monday at noon: one window a day)."""


@dataclass(frozen=True)
class GroupCheck:
    """One Dashboard group against the truth."""

    series: str
    label: str
    n_parts: int
    n_true_defects: int
    enough: bool
    true_fnr: float | None
    est_fnr: float | None
    fnr_low: float | None
    fnr_high: float | None
    true_fpr: float | None
    est_fpr: float | None
    fpr_low: float | None
    fpr_high: float | None

    @property
    def fnr_covers(self) -> bool | None:
        """Whether the FNR interval holds the true FNR (``None`` when not checkable)."""
        return _covers(self.true_fnr, self.fnr_low, self.fnr_high, self.enough)

    @property
    def fpr_covers(self) -> bool | None:
        """Whether the FPR interval holds the true FPR (``None`` when not checkable)."""
        return _covers(self.true_fpr, self.fpr_low, self.fpr_high, self.enough)


def _covers(
    truth: float | None, low: float | None, high: float | None, enough: bool
) -> bool | None:
    if truth is None or low is None or high is None or not enough:
        return None
    return low - 1e-12 <= truth <= high + 1e-12


def check_groups(
    parts: Sequence[LoopPart],
    truth: dict[int, int],
    period: str,
    series_of: Callable[[LoopPart], str],
) -> list[GroupCheck]:
    """Run the Dashboard's grouping and estimate, then compare each group with the truth.

    Args:
        parts: The decided parts, as :func:`db.loop_parts.loop_parts` gives them.
        truth: ``{image id: 1 defect / 0 good}`` for every part.
        period: ``"day"``, ``"week"`` or ``"shift"``.
        series_of: The series of a part (its model lineage, or :data:`LINE`).
    """
    return [
        compare(
            group.series,
            group.label,
            [p for p in parts if _in_group(p, group, series_of)],
            truth,
            group.estimate,
            enough=group.enough,
        )
        for group in rates_over_time(parts, period, series_of)  # type: ignore[arg-type]
    ]


def compare(
    series: str,
    label: str,
    members: Sequence[LoopPart],
    truth: dict[int, int],
    estimate: LoopEstimate,
    *,
    enough: bool,
) -> GroupCheck:
    """One group's estimate beside its true FNR and FPR (computed from ``truth``)."""
    defects = [p for p in members if truth[p.image_id] == 1]
    goods = [p for p in members if truth[p.image_id] == 0]
    missed = sum(not _stratum_sends(p) for p in defects)
    alarms = sum(_stratum_sends(p) for p in goods)
    return GroupCheck(
        series=series,
        label=label,
        n_parts=len(members),
        n_true_defects=len(defects),
        enough=enough,
        true_fnr=missed / len(defects) if defects else None,
        est_fnr=estimate.fnr.rate,
        fnr_low=estimate.fnr.low,
        fnr_high=estimate.fnr.high,
        true_fpr=alarms / len(goods) if goods else None,
        est_fpr=estimate.fpr.rate,
        fpr_low=estimate.fpr.low,
        fpr_high=estimate.fpr.high,
    )


def check_windows(parts: Sequence[LoopPart], truth: dict[int, int]) -> list[GroupCheck]:
    """Each replay window (one day) alone, not merged: the estimator's own calibration.

    :func:`services.loop_rates.estimate_parts` per window, as the replay reports it; a window
    whose point cannot be given still has an interval (the Jeffreys prior stands in for a
    region without labels).
    """
    from services.loop_rates import estimate_parts

    by_day: dict[datetime, list[LoopPart]] = {}
    for part in parts:
        by_day.setdefault(part.decided_at.replace(hour=0, minute=0, second=0), []).append(part)
    return [
        compare(
            LINE,
            f"window {(day - WINDOW_DAY.replace(hour=0)).days + 1}",
            members,
            truth,
            estimate_parts(members),
            enough=True,
        )
        for day, members in sorted(by_day.items())
    ]


def _in_group(part: LoopPart, group: RatePeriod, series_of: Callable[[LoopPart], str]) -> bool:
    return series_of(part) == group.series and group.start <= part.decided_at < group.end


def _stratum_sends(part: LoopPart) -> bool:
    """Whether the line sent the part to a human (its region, or its verdict when legacy)."""
    return stratum_of(part.region, part.verdict) in SEND_STRATA


def summary(checks: Sequence[GroupCheck]) -> dict[str, Any]:
    """Coverage and interval widths of FNR and FPR over the checkable groups."""
    out: dict[str, Any] = {
        "groups": len(checks),
        "not_enough": sum(not c.enough for c in checks),
        "parts": sum(c.n_parts for c in checks),
    }
    for name in ("fnr", "fpr"):
        covered = [getattr(c, f"{name}_covers") for c in checks]
        checked = [c for c, cov in zip(checks, covered, strict=True) if cov is not None]
        widths = [getattr(c, f"{name}_high") - getattr(c, f"{name}_low") for c in checked]
        out[name] = {
            "checked": len(checked),
            "covered": sum(bool(cov) for cov in covered if cov is not None),
            "coverage": (
                sum(bool(cov) for cov in covered if cov is not None) / len(checked)
                if checked
                else None
            ),
            "median_width": statistics.median(widths) if widths else None,
            "max_width": max(widths) if widths else None,
        }
    return out


# ---- replays -----------------------------------------------------------------------------


def replay_parts(path: Path) -> tuple[list[LoopPart], dict[int, int], int, str]:
    """The replay's parts (window k on day k), their truth, the window size and the name.

    A part is labelled (with its true label: the replay's inspector is an oracle) when the
    replay says it was reviewed by the end. Model lineages: the replay stores detector version
    numbers; instant updates and recalibrations keep the lineage (``same_model`` steps), refits
    start a new one.
    """
    data = json.loads(path.read_text())
    steps = data["steps"]
    window = int(data["windows"][0]["last"] - data["windows"][0]["first"] + 1)
    parts = []
    truth = {}
    for step in steps:
        position = int(step["pos"])
        day = WINDOW_DAY + timedelta(days=position // window, seconds=position % window)
        label = {1: "defect", 0: "good"}[int(step["label"])] if step["reviewed"] else None
        parts.append(
            LoopPart(
                image_id=position,
                decided_at=day,
                region=step.get("region"),
                audit_probability=step.get("audit_probability"),
                audited=bool(step["audit"]),
                verdict=step["verdict"],
                label=label,
                model_version_id=int(step["detector_version"]),
            )
        )
        truth[position] = int(step["label"])
    return parts, truth, window, str(data["name"])


def replay_lineages(path: Path) -> dict[int, str]:
    """``{detector version: lineage label}`` from the replay's job log.

    The start model (version 1) and every promoted refit (``refit_detector`` jobs) start a
    model; every other version that decided parts (instant updates, recalibrations) is a
    revision of the latest model started before it (only the active lineage decides parts).
    """
    data = json.loads(path.read_text())
    starts = [1] + sorted(
        int(job["candidate_version"])
        for job in data["jobs"]
        if job["kind"] == "refit_detector" and job.get("promoted")
    )
    labels: dict[int, str] = {}
    for version in sorted({int(step["detector_version"]) for step in data["steps"]}):
        started = [start for start in starts if start <= version]
        labels[version] = f"v{len(started)}"
    return labels


# ---- the demo's history ----------------------------------------------------------------


def demo_parts() -> tuple[list[LoopPart], dict[int, int], dict[int, str], list[Any], dict]:
    """Seed the demo into a temporary database, as ``make demo`` does.

    Returns:
        The simulated parts as the Dashboard reads them, their truth, the lineage of each
        version, the scored cells (score, anomaly map, truth: to plan more histories) and the
        planning inputs (v1's threshold, the target FNR, the odds). Today's live parts (not
        reviewed yet) have no recorded truth and are left out: the check covers the simulated
        weeks.
    """
    from sqlalchemy import select

    import db
    from adcore.datasets import Sample
    from db.loop_parts import loop_parts
    from db.model_lineages import model_label, model_numbers
    from services.demo import seed_demo
    from services.demo_history import true_labels
    from services.demo_history_plan import ScoredCell
    from services.project_settings import audit_odds

    with tempfile.TemporaryDirectory(prefix="loupe-rates-") as folder:
        root = Path(folder)
        engine = db.init_db(f"sqlite:///{root / 'loupe.db'}")
        factory = db.make_session_factory(engine)
        seeded = seed_demo(factory, models_root=root / "models", data_dir=root / "data")
        project_id = int(seeded["project_id"])
        with factory() as session:
            truth = true_labels(session, project_id)
            parts = [p for p in loop_parts(session, project_id) if p.image_id in truth]
            numbers = model_numbers(session, project_id)
            project = session.get(db.Project, project_id)
            first_version = min(p.model_version_id for p in parts)
            inputs = {
                "threshold_v1": session.get(db.ModelVersion, first_version).threshold,
                "target_fnr": project.target_fnr,
                "odds": audit_odds(project),
            }
            cells: dict[str, ScoredCell] = {}
            rows = session.execute(
                select(db.Prediction.image_id, db.Prediction.score, db.Prediction.anomaly_map_path)
                .where(db.Prediction.image_id.in_(list(truth)))
                .where(db.Prediction.model_version_id == first_version)
            )
            for image_id, score, map_path in rows:
                label = truth[image_id]
                sample = Sample(Path(map_path), label, "defect" if label else "good")
                cells.setdefault(map_path, ScoredCell(sample, float(score), map_path, None))
        engine.dispose()
    lineage = {vid: model_label(number.model_number) for vid, number in numbers.items()}
    return parts, truth, lineage, list(cells.values()), inputs


def planned_histories(cells: Sequence[Any], inputs: dict, seeds: Sequence[int]) -> list[GroupCheck]:
    """More demo histories: the product's planner with other seeds, on the same scored cells.

    :func:`services.demo_history_plan.plan_history` (what the demo stores) with each seed; its
    parts become :class:`db.loop_parts.LoopPart` rows as the store would give them (the current
    label is the last planned review's) and go through the Dashboard's weekly grouping.
    """
    from services.demo_history_plan import plan_history

    checks: list[GroupCheck] = []
    today = datetime.now(UTC).date()
    for seed in seeds:
        plan = plan_history(cells, today=today, seed=seed, **inputs)
        parts = [
            LoopPart(
                image_id=n,
                decided_at=planned.at,
                region=planned.region,
                audit_probability=planned.audit_probability,
                audited=planned.audit,
                verdict=planned.verdict,
                label=planned.reviews[-1].label if planned.reviews else None,
                model_version_id=1,
            )
            for n, planned in enumerate(plan.parts)
        ]
        truth = {n: int(planned.cell.sample.label) for n, planned in enumerate(plan.parts)}
        for check in check_groups(parts, truth, "week", lambda _p: LINE):
            checks.append(replace(check, series=f"seed {seed}"))
    return checks


# ---- report --------------------------------------------------------------------------------


def table(checks: Sequence[GroupCheck]) -> list[str]:
    """Markdown rows, one per group."""
    rows = [
        "| model | period | parts | true defects | true FNR | estimated FNR (95%) | covers "
        "| true FPR | estimated FPR (95%) | covers |",
        "|---|---|---:|---:|---:|---|:---:|---:|---|:---:|",
    ]
    for c in checks:
        rows.append(
            f"| {c.series} | {c.label} | {c.n_parts} | {c.n_true_defects} | {_pct(c.true_fnr)} "
            f"| {_interval(c.est_fnr, c.fnr_low, c.fnr_high, c.enough)} | {_yes(c.fnr_covers)} "
            f"| {_pct(c.true_fpr)} | {_interval(c.est_fpr, c.fpr_low, c.fpr_high, c.enough)} "
            f"| {_yes(c.fpr_covers)} |"
        )
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _interval(rate: float | None, low: float | None, high: float | None, enough: bool) -> str:
    if not enough:
        return "not enough parts"
    if low is None or high is None:
        return "n/a"
    return f"{_pct(rate)} ({_pct(low)}-{_pct(high)})"


def _yes(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "**no**")


def summary_line(name: str, result: dict[str, Any]) -> str:
    """One line of the targets section."""
    fnr, fpr = result["fnr"], result["fpr"]
    if fnr["coverage"] is None:
        verdict = "not checkable (no group with defects and enough labels)"
    else:
        met = "met" if fnr["coverage"] >= TARGET_COVERAGE else "**not met**"
        verdict = (
            f"{met}: {fnr['coverage']:.1%} ({fnr['covered']} of {fnr['checked']} groups), "
            f"median width {fnr['median_width']:.1%}, widest {fnr['max_width']:.1%}"
        )
    fpr_text = (
        "n/a"
        if fpr["coverage"] is None
        else f"{fpr['coverage']:.1%} ({fpr['covered']} of {fpr['checked']}), median width "
        f"{fpr['median_width']:.1%}"
    )
    return (
        f"- **{name}**: FNR interval covers the truth in >= 90% of groups: {verdict}. "
        f"FPR coverage {fpr_text}. Groups: {result['groups']} "
        f"({result['not_enough']} shown as not enough parts), {result['parts']} parts."
    )


def main(argv: list[str] | None = None) -> int:
    """Run the comparisons and print (or write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="seed and check the demo history")
    parser.add_argument(
        "--histories",
        type=int,
        default=0,
        help="with --demo: plan this many more histories (other seeds) on the same cells",
    )
    parser.add_argument("--replay", type=Path, action="append", default=[], help="replay JSON")
    parser.add_argument("--write-results", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args(argv)
    sections: list[tuple[str, str, list[GroupCheck]]] = []
    if args.demo:
        parts, truth, lineage, cells, inputs = demo_parts()
        by_model = lambda p: lineage.get(p.model_version_id, "unknown")  # noqa: E731
        for period in ("week", "day"):
            sections.append(
                (
                    f"demo history, per {period} and model",
                    period,
                    check_groups(parts, truth, period, by_model),
                )
            )
        sections.append(
            (
                "demo history, per week, whole line",
                "week",
                check_groups(parts, truth, "week", lambda _p: LINE),
            )
        )
        if args.histories:
            sections.append(
                (
                    f"{args.histories} more demo histories (seeds 1000-{999 + args.histories}), "
                    "per week",
                    "week",
                    planned_histories(cells, inputs, range(1000, 1000 + args.histories)),
                )
            )
    for path in args.replay:
        parts, truth, window, name = replay_parts(path)
        lineage = replay_lineages(path)
        sections.append(
            (
                f"replay {name} ({window}-part windows as days), per model",
                "day",
                check_groups(parts, truth, "day", lambda p, lin=lineage: lin[p.model_version_id]),
            )
        )
        sections.append(
            (
                f"replay {name} ({window}-part windows as days), whole line",
                "day",
                check_groups(parts, truth, "day", lambda _p: LINE),
            )
        )
        sections.append(
            (
                f"replay {name}, each {window}-part window alone (not merged)",
                "window",
                check_windows(parts, truth),
            )
        )
    if not sections:
        parser.error("nothing to check: give --demo and/or --replay")
    lines = render(sections, argv if argv is not None else sys.argv[1:])
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        RESULTS.write_text(text)
    return 0


def render(sections: Sequence[tuple[str, str, list[GroupCheck]]], argv: Sequence[str]) -> list[str]:
    """The whole report."""
    lines = [
        "# The Dashboard's estimated FNR/FPR against the truth (issue 26, item 6)",
        "",
        "Written by `bench/rates.py` (nothing typed by hand). Command:",
        "",
        "    python bench/rates.py " + " ".join(argv),
        "",
        __doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
        "",
        f"Run {datetime.now(UTC):%Y-%m-%dT%H:%M}Z on {platform.node()} "
        f"({os.cpu_count()} cores), Python {platform.python_version()}.",
        "",
        "## Targets",
        "",
        "The estimated FNR's 95% interval covers the true FNR in at least 90% of the periods "
        "(weekly on the demo's history; the replay windows):",
        "",
    ]
    lines += [summary_line(name, summary(checks)) for name, _period, checks in sections]
    for name, _period, checks in sections:
        lines += ["", f"## {name}", ""] + table(checks)
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
