"""Candidates on the Models page: each beside the active model, the gate, promote, override.

Imported by ``pages/models.py``; not a page itself. The rules (roles, the gate) live in the
``db`` functions; this module only draws them. Versions are named by their lineage label
(``v2.3``, :mod:`db.model_lineages`). Rolling back is drawn per model by
:mod:`pages.model_lineages_panel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import streamlit as st

from db.model_candidates import CandidateComparison, candidate_comparisons
from db.model_families import ModelFamily
from db.model_lineages import version_labels
from db.model_versions import promote_model_version, rollback_to
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.model_jobs_panel import when
from pages.tab_state import load_user

if TYPE_CHECKING:
    import pandas as pd


def percent(value: float | None) -> str:
    """A rate as ``12.3%``, or ``n/a``."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def promote_clicked(version_id: int, label: str, reason_key: str | None = None) -> None:
    """Promote a candidate through the gate; with ``reason_key``, override it with that reason."""
    reason = None
    if reason_key is not None:
        reason = (st.session_state.get(reason_key) or "").strip()
        if not reason:
            flash(f"Write why you promote {label} despite the gate; nothing changed.", "error")
            return
    try:
        with transaction() as session:
            promote_model_version(session, version_id, load_user(session), override_reason=reason)
    except ACTION_ERRORS as err:
        flash(f"Could not promote {label}: {err}", "error")
        return
    how = " (gate overridden; the reason is recorded)" if reason else ""
    flash(f"{label} is now the active model{how}.")


def rollback_clicked(version_id: int, label: str) -> None:
    """Make an earlier, previously active version active again."""
    try:
        with transaction() as session:
            rollback_to(session, version_id, load_user(session))
    except ACTION_ERRORS as err:
        flash(f"Could not roll back to {label}: {err}", "error")
        return
    flash(f"{label} is the active model again.")


def _label(labels: Mapping[int, str], numbers: dict | None) -> str:
    """The lineage label of the version a gate record names (its number if it is gone)."""
    numbers = numbers or {}
    return labels.get(numbers.get("version_id"), f"v{numbers.get('version')}")


def _rates_table(row: CandidateComparison, labels: Mapping[int, str]) -> pd.DataFrame:
    import pandas as pd  # lazily: app.py imports this module on every run

    candidate, active = row.candidate or {}, row.active
    active_label = f"Active {_label(labels, active)}" if active else "Active (none)"
    if active and active.get("version") is None:  # e.g. a first scorer vs the detector alone
        active_label = "Verdicts in force"

    def cell(rates: dict | None, name: str) -> str:
        if rates is None:
            return "—"
        value = rates.get(name)
        if name in ("fnr", "fpr"):
            return percent(value)
        if name == "threshold":
            return "—" if value is None else f"{value:.4f}"
        return "—" if value is None else str(int(value))

    names = {
        "fnr": "Miss rate (FNR)",
        "fpr": "False alarms (FPR)",
        "n_defect": "Held-out defects",
        "n_good": "Held-out good",
        "threshold": "Threshold",
    }
    return pd.DataFrame(
        {
            "": list(names.values()),
            f"Candidate {labels[row.version_id]}": [cell(candidate, n) for n in names],
            active_label: [cell(active, n) for n in names],
        }
    )


def _explainer_table(row: CandidateComparison, labels: Mapping[int, str]) -> pd.DataFrame:
    """ROUGE-L and fact-check pass rate: explainer adapter, untuned model, active adapter."""
    import pandas as pd

    columns = {f"Candidate {labels[row.version_id]}": row.candidate, "Untuned model": row.baseline}
    if row.active:
        columns[f"Active {_label(labels, row.active)}"] = row.active

    def cell(numbers: dict | None, name: str) -> str:
        value = (numbers or {}).get(name)
        if value is None:
            return "—"
        if name == "rouge_l":
            return f"{value:.3f}"
        return percent(value) if name == "fact_check_pass_rate" else str(int(value))

    names = {
        "rouge_l": "ROUGE-L vs inspectors' notes",
        "fact_check_pass_rate": "Fact-check pass rate",
        "n": "Held-out notes",
    }
    table = {"": list(names.values())}
    table.update({label: [cell(numbers, n) for n in names] for label, numbers in columns.items()})
    return pd.DataFrame(table)


def _triage_table(row: CandidateComparison, labels: Mapping[int, str]) -> pd.DataFrame:
    """A triage candidate's out-of-fold evidence: what it would have auto-accepted."""
    import pandas as pd

    evidence = row.candidate or {}

    def count(name: str) -> str:
        value = evidence.get(name)
        return "—" if value is None else str(int(value))

    rows = {
        "Flagged good parts (labelled)": count("n_goods"),
        "Good parts auto-accepted out of fold": f"{count('accepted_goods')} "
        f"({percent(evidence.get('accepted_goods_share'))})",
        "Flagged defects (labelled)": count("n_defects"),
        "Defects auto-accepted out of fold": f"{count('accepted_defects')} "
        f"({percent(evidence.get('accepted_defects_share'))})",
        "95% upper bound on defects auto-accepted": percent(evidence.get("defect_upper")),
        "Budget": percent(evidence.get("budget")),
        "Auto-accept threshold (p(defect) below it)": "—"
        if row.threshold is None
        else f"{row.threshold:.4f}",
    }
    column = f"Candidate {labels[row.version_id]}"
    return pd.DataFrame({"": list(rows), column: list(rows.values())})


def candidate_card(row: CandidateComparison, labels: Mapping[int, str]) -> None:
    """One candidate next to the active model, the gate's verdict, promote and override.

    Args:
        row: The candidate and its gate record.
        labels: ``{version id: "v2.3"}`` of the project's versions.
    """
    label = labels[row.version_id]
    with st.container(border=True, key=f"candidate-{row.version_id}"):
        st.markdown(f"**Candidate {label}** · {row.kind} · {when(row.created_at)}")
        if row.candidate is None:
            st.caption("Never evaluated against the active model on held-out parts.")
        else:
            explainer = "rouge_l" in row.candidate
            triage = "accepted_goods" in row.candidate
            draw = _explainer_table if explainer else (_triage_table if triage else _rates_table)
            table = draw(row, labels)
            st.dataframe(table, hide_index=True, key=f"compare-{row.version_id}")
            heldout = row.heldout
            if heldout.get("n_unreadable"):
                st.caption(f"{heldout['n_unreadable']} held-out part(s) could not be read.")
        for note in row.decision.notes:
            st.caption(note)
        if row.may_promote:
            st.success("The gate passes: this candidate may replace the active model.")
        else:
            st.error("The gate refuses it:\n" + "\n".join(f"- {reason}" for reason in row.refusals))
        st.button(
            f"Promote {label}",
            key=f"promote-{row.version_id}",
            type="primary",
            icon=":material/rocket_launch:",
            disabled=not row.may_promote,
            help=None if row.may_promote else " ".join(row.refusals),
            on_click=promote_clicked,
            args=(row.version_id, label),
        )
        if not row.may_promote:
            with st.expander("Override and promote"):
                reason_key = f"override-reason-{row.version_id}"
                st.text_area(
                    "Why promote despite the gate? (recorded with your name)",
                    key=reason_key,
                    max_chars=1000,
                )
                st.button(
                    f"Override and promote {label}",
                    key=f"override-{row.version_id}",
                    icon=":material/gpp_maybe:",
                    on_click=promote_clicked,
                    args=(row.version_id, label, reason_key),
                )


def candidates_section(project_id: int) -> None:
    """Every candidate of every model family, compared with its family's active version."""
    with transaction() as session:
        rows = [
            (family, row)
            for family in ModelFamily
            for row in candidate_comparisons(session, project_id, family)
        ]
        labels = version_labels(session, project_id)
    st.subheader("Candidates")
    if not rows:
        st.caption("No candidate waiting: queue a job under Improve the model to make one.")
        return
    for family, row in rows:
        if family == ModelFamily.SCORER:
            st.caption("Triage model (stage 2) candidate")
        elif family != ModelFamily.DETECTOR:
            st.caption(f"{family.value.capitalize()} candidate")
        candidate_card(row, labels)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
