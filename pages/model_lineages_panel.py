"""The models of a project on the Models page: one section per model, its revisions inside.

A model (``v2``) is a lineage: its instant updates and recalibrations are revisions
(``v2.0`` ... ``v2.14``, :mod:`db.model_lineages`). An overview table lists the models; each
model's section lists its revisions in one table (revision, created, threshold, status, what made
it, notes, the fit's facts) and acts on one revision at a time: a selectbox of the revisions that
can change state and one button (promote a candidate through the gate, roll back to or
re-activate a revision that served). So a model with hundreds of revisions draws three widgets,
not a button per revision.

Imported by ``pages/models.py``; not a page itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from db.base import ModelStatus
from db.model_families import ModelFamily
from db.model_lineages import Lineage, Revision
from pages.cascade_panel import family_label
from pages.model_candidates_panel import promote_clicked, rollback_clicked
from pages.model_jobs_panel import when

#: The newest models drawn as sections (older ones stay in the overview table).
MODELS_SHOWN = 30


def overview_table(models: Sequence[Lineage]) -> pd.DataFrame:
    """One row per model: its role, kind, state, revisions, active and newest revision."""
    return pd.DataFrame(
        [
            {
                "Model": lineage.label,
                "Role": family_label(lineage.kind),
                "Kind": lineage.kind,
                "Status": "active" if lineage.active is not None else lineage.latest.status,
                "Revisions": len(lineage.revisions),
                "Active revision": "—" if lineage.active is None else lineage.active.label,
                "Newest revision": lineage.latest.label,
            }
            for lineage in models
        ]
    )


def revisions_table(lineage: Lineage) -> pd.DataFrame:
    """One row per revision, newest first: what a manager needs to pick one."""
    rows = []
    for revision in lineage.revisions:
        row: dict[str, object] = {
            "Revision": revision.label,
            "Created": when(revision.created_at),
            "Threshold": revision.threshold,
            "Status": revision.status,
            "Made by": revision.origin.value,
            "Notes": revision.notes,
        }
        row.update({k: v for k, v in revision.facts.items() if k not in row})
        rows.append(row)
    return pd.DataFrame(rows)


def actionable(lineage: Lineage) -> list[Revision]:
    """The revisions a manager can act on: candidates, and retired ones that served."""
    return [
        r
        for r in lineage.revisions
        if r.status == ModelStatus.CANDIDATE or (r.status == ModelStatus.RETIRED and r.was_active)
    ]


def action_label(revision: Revision, active_version: int | None) -> str:
    """The button's words for a revision: promote, roll back (older) or re-activate (newer)."""
    if revision.status == ModelStatus.CANDIDATE:
        return f"Promote {revision.label}"
    if active_version is None or revision.version < active_version:
        return f"Roll back to {revision.label}"
    return f"Re-activate {revision.label}"


def revision_actions(lineage: Lineage, active_version: int | None) -> None:
    """A selectbox of the lineage's actionable revisions and one button acting on the chosen."""
    choices = actionable(lineage)
    if not choices:
        return
    by_id = {revision.version_id: revision for revision in choices}
    chosen_id = st.selectbox(
        "Revision to promote or bring back",
        list(by_id),
        format_func=lambda i: f"{by_id[i].label} ({by_id[i].status}, {when(by_id[i].created_at)})",
        key=f"revision-{lineage.model_number}",
    )
    chosen = by_id[chosen_id]
    promote = chosen.status == ModelStatus.CANDIDATE
    st.button(
        action_label(chosen, active_version),
        key=f"revision-action-{lineage.model_number}",
        icon=":material/rocket_launch:" if promote else ":material/history:",
        on_click=promote_clicked if promote else rollback_clicked,
        args=(chosen.version_id, chosen.label),
        help="Through the gate (override it under Candidates)."
        if promote
        else "No gate: this revision served before.",
    )


def lineages_section(project_name: str, models: Sequence[Lineage]) -> None:
    """The project's models: the overview, then a section per model (newest first).

    Args:
        project_name: The project's name, for the heading.
        models: Its lineages (:func:`db.model_lineages.lineages`), newest first.
    """
    active_numbers: dict[ModelFamily, int] = {}
    for lineage in models:
        if lineage.active is not None:
            active_numbers.setdefault(lineage.family, lineage.active.version)
    st.subheader(f"Models of {project_name}")
    if not models:
        st.info("No model yet: train a first one below.")
        return
    st.dataframe(overview_table(models), hide_index=True, key="models_table")
    st.caption(
        "A model's instant updates and recalibrations are its revisions (v2.0, v2.1, ...); "
        "a fit from scratch is a new model."
    )
    for lineage in models[:MODELS_SHOWN]:
        with st.expander(lineage.title, expanded=lineage.active is not None):
            st.dataframe(
                revisions_table(lineage),
                hide_index=True,
                key=f"revisions-{lineage.model_number}",
            )
            revision_actions(lineage, active_numbers.get(lineage.family))
    if len(models) > MODELS_SHOWN:
        st.caption(f"{len(models) - MODELS_SHOWN} older model(s): see the table above.")


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
