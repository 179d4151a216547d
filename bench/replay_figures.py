"""The replay's cascade figures: the safe baseline, goods sent to a human, the loop's estimate.

Split from ``bench/replay.py`` (which runs the loop) and used by it and by
``bench/replay_report.py``: everything here reads a run's steps, or calls the product's own
estimate (:func:`services.loop_rates.loop_rates`) on the run's database.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def safe_baseline(start_scores: np.ndarray, labels: np.ndarray, target_fnr: float) -> dict:
    """The safe baseline: the start model at the threshold missing <= target of all defects.

    Chosen on the whole stream's true labels (:func:`adcore.thresholds.select_threshold`): an
    oracle, the best a plant could do without learning.
    """
    from adcore.thresholds import select_threshold

    choice = select_threshold(start_scores, labels, target_fnr=target_fnr)
    return {"threshold": float(choice.value), "fnr": choice.fnr, "fpr": choice.fpr}


def loop_estimates(lab: Any, steps: list[dict], windows: list[dict], late_from: int) -> dict:
    """The loop's own estimate of its FNR/FPR per window and on the late stream, with truth.

    Calls :func:`services.loop_rates.loop_rates` (what the Dashboard calls) over the period in
    which each window's parts were first decided, after the whole stream (every label the
    oracle gave is in). The truth is the stored verdicts against the true labels.
    """
    from datetime import datetime, timedelta

    from services.loop_rates import loop_rates

    def period(first: int, last: int) -> tuple[datetime, datetime]:
        since = datetime.fromisoformat(steps[first]["decided_at"])
        until = datetime.fromisoformat(steps[last]["decided_at"]) + timedelta(microseconds=1)
        return since, until

    def estimate(first: int, last: int) -> dict:
        since, until = period(first, last)
        with lab.factory() as session:
            found = loop_rates(session, lab.project_id, since=since, until=until)
        part = steps[first : last + 1]
        defects = [s for s in part if s["label"] == 1]
        true_fnr = sum(s["verdict"] == "good" for s in defects) / len(defects) if defects else None
        fnr = found.fnr
        covers = None
        if true_fnr is not None and fnr.low is not None and fnr.high is not None:
            covers = bool(fnr.low - 1e-12 <= true_fnr <= fnr.high + 1e-12)
        return {
            "first": first + 1,
            "last": last + 1,
            "true_fnr": true_fnr,
            "est_fnr": fnr.rate,
            "est_fnr_low": fnr.low,
            "est_fnr_high": fnr.high,
            "est_fpr": found.fpr.rate,
            "est_fpr_low": found.fpr.low,
            "est_fpr_high": found.fpr.high,
            "covers": covers,
            "notes": list(found.notes),
        }

    per_window = [estimate(w["first"] - 1, w["last"] - 1) for w in windows]
    late = estimate(late_from, len(steps) - 1) if late_from < len(steps) else None
    checked = [w["covers"] for w in per_window if w["covers"] is not None]
    return {
        "windows": per_window,
        "late": late,
        "coverage": sum(checked) / len(checked) if checked else None,
        "n_windows_checked": len(checked),
    }


def late_figures(steps: list[dict], late_from: int) -> dict:
    """Goods sent to a human and stream FNR on the late stream (parts after ``late_from``)."""
    late = [s for s in steps if s["pos"] >= late_from]
    goods = [s for s in late if s["label"] == 0]
    defects = [s for s in late if s["label"] == 1]
    return {
        "n": len(late),
        "n_good": len(goods),
        "n_defect": len(defects),
        "goods_to_human": sum(s["reviewed"] for s in goods) / len(goods) if goods else None,
        "safe_goods_to_human": (
            sum(s["safe_flagged"] for s in goods) / len(goods) if goods else None
        ),
        "fnr": sum(s["verdict"] == "good" for s in defects) / len(defects) if defects else None,
        "safe_fnr": (
            sum(not s["safe_flagged"] for s in defects) / len(defects) if defects else None
        ),
        "auto_accepted": sum(s.get("region") == "auto_accepted" for s in late),
        "audits": sum(s["audit"] for s in late),
    }


def compare_passes(with_stage2: dict, stage1_only: dict | None) -> dict:
    """The issue's late-stream figures of a run, with its stage-2-off pass when there is one.

    The late stream is the stage-2 run's (the parts after its snapshot), for both passes.
    """
    late_from = with_stage2["late_from"]
    on = late_figures(with_stage2["steps"], late_from)
    off = None if stage1_only is None else late_figures(stage1_only["steps"], late_from)
    return {
        "late_goods_to_human": on["goods_to_human"],
        "late_goods_to_human_safe_baseline": on["safe_goods_to_human"],
        "late_goods_to_human_stage1_only": None if off is None else off["goods_to_human"],
        "late_stream_fnr": on["fnr"],
        "late_stream_fnr_safe_baseline": on["safe_fnr"],
        "late_stream_fnr_stage1_only": None if off is None else off["fnr"],
        "estimate_coverage": with_stage2["estimates"]["coverage"],
        "late": on,
        "late_stage1_only": off,
    }
