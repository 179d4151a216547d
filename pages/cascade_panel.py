"""The "Decision cascade" section of the Models page (a helper module, not a page).

The line decides in two stages: the screen (stage 1, the active detector at its threshold)
flags parts, and the triage model (stage 2, the project's active feedback scorer, trained on
flagged parts only) auto-accepts a flagged part as good when its p(defect) is below its
auto-accept threshold; every other flagged part goes to a human. This section says which
stages decide now and why stage 2 is off when it is, and lets managers switch stage 2 off or
on and set its auto-accept budget. The rules (roles, ranges) are checked by
:func:`services.scorer_training.set_scorer_setting`, not only by the page.

Promoting a triage candidate and rolling back to an earlier triage model are the Models page's
per-family Candidates and Versions controls (:mod:`pages.model_candidates_panel`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import streamlit as st

import db
from adcore.feedback_scorer import MIN_PER_CLASS
from db.model_families import ModelFamily, active_version, detector_lineage, model_family
from db.model_lineages import label_of, version_labels
from db.model_metrics import read_metrics
from db.projects import get_project, list_model_versions
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.scorer_training import (
    MAX_BUDGET,
    ScorerSetting,
    TriageStatus,
    scorer_setting,
    scorer_unavailable_reason,
    set_scorer_setting,
    triage_budget,
    triage_status,
)
from services.scoring.feedback import scorer_detector_id

STAGE2_LABEL = "Triage model (stage 2)"
"""How the page names the scorer family (kind ``feedback_scorer``)."""
SCREEN_LABEL = "Screen (stage 1)"
"""How the page names the detector family."""
FAMILY_LABELS = {
    ModelFamily.DETECTOR: SCREEN_LABEL,
    ModelFamily.SCORER: STAGE2_LABEL,
    ModelFamily.CLASSIFIER: "Classifier",
    ModelFamily.EXPLAINER: "Explainer",
}
MISS_RATE_CAPTION = (
    "Rates computed from reviews alone cannot see missed defects; the line's estimated miss "
    "rate combines reviews with audits weighted by their known odds (Dashboard)."
)


def family_label(kind: str) -> str:
    """The page's name for the family of a model kind (e.g. ``Triage model (stage 2)``)."""
    return FAMILY_LABELS[model_family(kind)]


def enabled_key(project_id: int) -> str:
    """Session-state key of the project's stage-2 toggle."""
    return f"stage2_enabled_{project_id}"


def budget_key(project_id: int) -> str:
    """Session-state key of the project's auto-accept budget input (in %)."""
    return f"triage_budget_percent_{project_id}"


# --------------------------------------------------------------------------- what is stored


@dataclass(frozen=True)
class TriageVersion:
    """A triage model version as the section shows it.

    Attributes:
        version: Its version number.
        label: Its lineage label (``"v3.0"``, :mod:`db.model_lineages`).
        threshold: Its auto-accept threshold (``None``: none recorded).
        evidence: Its out-of-fold triage evidence (``TriageEvidence.to_json()``), or ``{}``.
        passed: Whether its gate passed (``None``: never gated).
        reasons: Why its gate refused it.
        fits: Whether it was trained on the active detector (or its lineage).
        detector_version_id: The detector version it was trained on.
        detector_label: That version's label, if it still exists.
    """

    version: int
    label: str
    threshold: float | None
    evidence: dict[str, Any]
    passed: bool | None
    reasons: tuple[str, ...]
    fits: bool
    detector_version_id: int | None
    detector_label: str | None = None


@dataclass(frozen=True)
class CascadeState:
    """Everything the section shows, read in one transaction.

    Attributes:
        target_fnr: The project's target miss rate.
        detector: ``(label, kind, threshold)`` of the active detector, or ``None``.
        setting: The project's scorer option (``enabled``, ``budget``).
        budget: The auto-accept budget in force (the setting, else the target FNR).
        active: The active triage model, or ``None``.
        candidate: The newest triage candidate, or ``None``.
        status: Labelled flagged parts and the defects still needed (``None`` when stage 2
            cannot train at all, see ``unavailable``).
        unavailable: Why no triage model can be trained now (no detector, no vectors).
    """

    target_fnr: float
    detector: tuple[str, str, float | None] | None
    setting: ScorerSetting
    budget: float
    active: TriageVersion | None
    candidate: TriageVersion | None
    status: TriageStatus | None
    unavailable: str | None


def _triage_version(
    version: db.ModelVersion, lineage: list[int], labels: dict[int, str]
) -> TriageVersion:
    """The section's view of one scorer version (its metrics read through db.model_metrics)."""
    metrics = read_metrics(version)
    evidence = metrics.facts.get("triage")
    gate = metrics.gate
    trained_on = scorer_detector_id(version)
    return TriageVersion(
        version=version.version,
        label=label_of(version),
        threshold=version.threshold,
        evidence=dict(evidence) if isinstance(evidence, dict) else {},
        passed=None if gate is None else gate.decision.passed,
        reasons=() if gate is None else gate.decision.reasons,
        fits=trained_on is not None and trained_on in lineage,
        detector_version_id=trained_on,
        detector_label=None if trained_on is None else labels.get(trained_on),
    )


def cascade_state(project_id: int) -> CascadeState:
    """Read what the section shows about a project's cascade.

    Raises:
        LookupError: If the project does not exist.
    """
    with transaction() as session:
        project = get_project(session, project_id)
        if project is None:
            raise LookupError(f"No project with id {project_id}.")
        detector = active_version(session, project_id, ModelFamily.DETECTOR)
        lineage = detector_lineage(detector) if detector is not None else []
        scorer = active_version(session, project_id, ModelFamily.SCORER)
        candidate = next(
            (
                v
                for v in list_model_versions(session, project_id)
                if model_family(v.kind) == ModelFamily.SCORER
                and v.status == db.ModelStatus.CANDIDATE
            ),
            None,
        )
        unavailable = scorer_unavailable_reason(session, project_id)
        labels = version_labels(session, project_id)
        return CascadeState(
            target_fnr=float(project.target_fnr),
            detector=None
            if detector is None
            else (label_of(detector), detector.kind, detector.threshold),
            setting=scorer_setting(project),
            budget=triage_budget(project),
            active=None if scorer is None else _triage_version(scorer, lineage, labels),
            candidate=None if candidate is None else _triage_version(candidate, lineage, labels),
            status=None if unavailable else triage_status(session, project_id),
            unavailable=unavailable,
        )


# --------------------------------------------------------------------------- callbacks


def _save_setting(project_id: int, what: str, **changes: Any) -> ScorerSetting | None:
    """Store the project's scorer option with ``changes``; flash and return ``None`` on error."""
    try:
        with transaction() as session:
            project = get_project(session, project_id)
            if project is None:
                raise LookupError(f"No project with id {project_id}.")
            setting = dataclasses.replace(scorer_setting(project), **changes)
            return set_scorer_setting(session, project_id, setting, user=load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not change {what}: {err}", "error")
        return None


def stage2_toggled(project_id: int) -> None:
    """Toggle callback: switch stage 2 on or off (the service checks the role)."""
    key = enabled_key(project_id)
    enabled = bool(st.session_state.get(key))
    if _save_setting(project_id, "stage 2", enabled=enabled) is None:
        st.session_state.pop(key, None)  # show the stored state again
        return
    if enabled:
        flash(
            "Stage 2 is on: an active triage model that fits the screen auto-accepts flagged "
            "parts below its auto-accept threshold."
        )
    else:
        flash("Stage 2 is off: every flagged part goes to a human.", "info")


def save_budget_clicked(project_id: int) -> None:
    """Button callback: store the auto-accept budget typed in % (blank or 0: the target FNR)."""
    key = budget_key(project_id)
    typed = st.session_state.get(key)
    budget = None if not typed else float(typed) / 100.0
    stored = _save_setting(project_id, "the auto-accept budget", budget=budget)
    if stored is None:
        st.session_state.pop(key, None)
        return
    if stored.budget is None:
        flash("The auto-accept budget is now the project's target miss rate.")
    else:
        flash(
            f"The auto-accept budget is now {stored.budget:.1%} of the flagged defects; it "
            "applies to triage models trained from now on."
        )


# --------------------------------------------------------------------------- drawing


def _percent(value: float) -> str:
    return f"{value:.1%}"


def off_reasons(state: CascadeState) -> list[str]:
    """Why stage 2 does not decide now (empty when it does)."""
    if not state.setting.enabled:
        reason = "Switched off by a manager: every flagged part goes to a human."
        if state.active is not None:
            reason += (
                f" Triage model {state.active.label} stays active but does not decide "
                "until stage 2 is switched on again."
            )
        return [reason]
    if state.detector is None:
        return ["No active detector: nothing is screened yet."]
    active = state.active
    if active is not None and active.fits:
        return []
    reasons = []
    if active is not None:
        trained_on = active.detector_label or f"version id {active.detector_version_id}"
        reasons.append(
            f"Triage model {active.label} was trained on another detector ({trained_on}), not "
            "the active screen; a triage model trained on the active detector is needed."
        )
    candidate = state.candidate
    if candidate is not None and candidate.passed is False:
        reasons.append(
            f"The latest triage candidate {candidate.label} was refused by its gate: "
            + " ".join(candidate.reasons or ("no reason recorded.",))
        )
    elif candidate is not None and candidate.passed:
        reasons.append(
            f"Triage candidate {candidate.label} passed its gate and waits for a manager "
            "to promote it under Candidates."
        )
    if state.unavailable:
        reasons.append(state.unavailable)
    elif active is None and state.status is not None:
        reasons.append(status_sentence(state.status))
    return reasons


def status_sentence(status: TriageStatus) -> str:
    """What the labelled flagged parts allow, e.g. "needs 120 more labelled flagged defects"."""
    counts = (
        f"has {status.n_defects} defects and {status.n_goods} good parts among flagged parts; "
        f"budget {_percent(status.budget)}"
    )
    if status.defects_needed > 0:
        return (
            f"No triage model yet: it needs {status.defects_needed} more labelled flagged "
            f"defects ({counts})."
        )
    if status.n_goods < MIN_PER_CLASS:
        return (
            f"No triage model yet: it needs {MIN_PER_CLASS - status.n_goods} more labelled "
            f"flagged good parts ({counts})."
        )
    return (
        f"No triage model yet, but there are enough labelled flagged parts ({counts}): it "
        "trains by itself after reviews, or queue it under Improve the model."
    )


def _screen_line(state: CascadeState) -> str:
    if state.detector is None:
        return f"**{SCREEN_LABEL}:** no active detector yet."
    label, kind, threshold = state.detector
    at = "no threshold yet" if threshold is None else f"threshold **{threshold:.4g}**"
    return (
        f"**{SCREEN_LABEL}:** detector {label} ({kind}) at {at}: a part scoring at or above "
        "it is flagged; the others pass (some are audited, see the Dashboard)."
    )


def _stage2_on(active: TriageVersion) -> None:
    threshold = "n/a" if active.threshold is None else f"{active.threshold:.2f}"
    st.success(
        f"**{STAGE2_LABEL}: ON.** Triage model {active.label} auto-accepts a flagged part "
        f"as good when its p(defect) is below its auto-accept threshold **{threshold}**; every "
        "other flagged part goes to a human.",
        icon=":material/check_circle:",
    )
    sentence = active.evidence.get("sentence")
    if sentence:
        st.caption(str(sentence))
    else:
        st.caption("No out-of-fold triage evidence is recorded with this version.")


def _manager_controls(project_id: int, state: CascadeState) -> None:
    key = enabled_key(project_id)
    if key not in st.session_state:
        st.session_state[key] = state.setting.enabled
    st.toggle(
        "Stage 2 may auto-accept flagged parts",
        key=key,
        on_change=stage2_toggled,
        args=(project_id,),
        help="Off: no triage model decides (even an active one) and none trains by itself; "
        "every flagged part goes to a human.",
    )
    key = budget_key(project_id)
    if key not in st.session_state:
        budget = state.setting.budget
        st.session_state[key] = None if budget is None else round(budget * 100.0, 2)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    left.number_input(
        f"Auto-accept budget (% of flagged defects; blank or 0: the target miss rate, "
        f"{_percent(state.target_fnr)})",
        min_value=0.0,
        max_value=MAX_BUDGET * 100.0,
        value=None,
        step=0.1,
        format="%.1f",
        key=key,
        help="The most of the flagged defects stage 2 may auto-accept, as a 95% upper bound "
        "measured out of fold. A smaller budget needs more labelled flagged defects.",
    )
    right.button(
        "Save budget", key="save_triage_budget", on_click=save_budget_clicked, args=(project_id,)
    )


def cascade_section(project_id: int, *, can_change: bool) -> None:
    """Draw the section: the screen, stage 2's state (and why it is off), the manager controls.

    Args:
        project_id: The project.
        can_change: Whether to offer the controls (the service checks the role again).
    """
    state = cascade_state(project_id)
    st.subheader("Decision cascade")
    st.markdown(_screen_line(state))
    reasons = off_reasons(state)
    if not reasons and state.active is not None:
        _stage2_on(state.active)
        candidate = state.candidate
        if candidate is not None and candidate.passed is False:
            st.caption(
                f"The latest triage candidate {candidate.label} was refused by its gate "
                f"({state.active.label} keeps deciding): " + " ".join(candidate.reasons)
            )
    else:
        st.warning(
            f"**{STAGE2_LABEL}: OFF.** Every flagged part goes to a human.\n\n"
            + "\n".join(f"- {reason}" for reason in reasons),
            icon=":material/pause_circle:",
        )
    budget = "the target miss rate" if state.setting.budget is None else "set by a manager"
    st.caption(
        f"Auto-accept budget: {_percent(state.budget)} of the flagged defects ({budget}). "
        "Triage candidates are promoted, and earlier triage models restored, like any model: "
        "under Candidates and Versions."
    )
    if can_change:
        _manager_controls(project_id, state)
    st.caption(MISS_RATE_CAPTION)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
