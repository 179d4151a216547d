"""Explanation panels under a part in Inspect and Review (not a page: a helper module).

* **Why it was flagged** (first): the grounded explanation stored with the prediction
  (:mod:`adcore.explain`: one to three sentences, and the measured facts in an expander);
  predictions stored before explanations existed are explained on the fly from the stored
  image and anomaly map.
* **Grad-CAM** (:mod:`pages.gradcam_panel`) of the project's active supervised classifier
  (when one is active): which regions pushed p(defect) up, next to the classifier's probability
  and likely defect type; otherwise, of a PatchCore detector's anomaly above the normal level
  (no training needed, so the demo shows it from its first minute).

When the project's language-model option is on, the "Why" panel shows the grounded text at
once and rephrases it in a background thread
(:func:`services.explanation_rewriting.rewrite_prediction`:
loaded once per server process, fact-checked, stored with the prediction); a fragment polls the
thread and the page re-runs to show the rewrite. Under the text, inspectors accept or edit it
(:mod:`pages.explanation_notes_panel`).

Every panel names its part (the file name, as the Review desk shows it): under the desk, the
panels of one part must never be read as another's (:mod:`pages.review_desk`).

Later explainers add their panels in :func:`explanation_panels`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import streamlit as st

import db
from db.model_families import ModelFamily, active_version
from pages.db_session import session_factory, transaction
from pages.explanation_notes_panel import explanation_notes
from pages.gradcam_panel import anomaly_gradcam_panel, gradcam_panel
from pages.page_tasks import TaskProgress, start_task
from pages.part_display import image_pixels, plain_markdown
from services.explanation_rewriting import (
    LanguageModelChoice,
    RewriteOutcome,
    choice_unavailable,
    language_model_choice,
    rewrite_prediction,
    stored_rewrite,
)

PATCHCORE_KIND = "patchcore"
"""The detector kind whose anomaly Grad-CAM explains (:func:`adcore.gradcam.anomaly_gradcam`)."""
REWRITE_JOBS_KEY = "_explanation_rewrites"  # {(prediction id, model label): TaskProgress}
REWRITE_POLL_SECONDS = 1.0


@st.cache_data(show_spinner=False, max_entries=256)
def explanation_on_the_fly(
    stored_path: str, anomaly_map_path: str, score: float, threshold: float
) -> dict[str, Any] | None:
    """Facts and text of an older prediction without a stored explanation (None if unreadable)."""
    from adcore.explain import explain
    from services.map_store import load_anomaly_map

    pixels = image_pixels(stored_path)
    if pixels is None:
        return None
    return explain(pixels, load_anomaly_map(anomaly_map_path), score, threshold)


@dataclass(frozen=True)
class ExplainedPart:
    """What the "Why" panel needs about one prediction (read in one transaction)."""

    prediction_id: int
    name: str  # the part's file name
    explanation: dict[str, Any] | None
    stored_path: str
    anomaly_map_path: str | None
    score: float
    threshold: float
    language_model: LanguageModelChoice | None  # None: the project's option is off


def rewrite_job(prediction_id: int, choice: LanguageModelChoice) -> TaskProgress:
    """This session's background rewrite of a prediction by a model (started on first call)."""
    jobs: dict[tuple[int, str], TaskProgress] = st.session_state.setdefault(REWRITE_JOBS_KEY, {})
    key = (prediction_id, choice.label)
    if key not in jobs:
        factory = session_factory()
        jobs[key] = start_task(
            f"rephrasing prediction {prediction_id}",
            lambda _progress: rewrite_prediction(factory, prediction_id),
        )
    return jobs[key]


def poll_rewrite(job: TaskProgress, label: str) -> None:
    """Re-check the background rewrite every second; re-run the page when it has ended."""

    @st.fragment(run_every=REWRITE_POLL_SECONDS)
    def poll() -> None:
        if job.snapshot()["done"]:
            st.rerun()  # the whole page: the text and the Accept / Edit buttons change
        st.caption(f":material/autorenew: Rephrasing with {label}… (the measured text meanwhile)")

    poll()


def show_rewrite(rewrite: dict[str, Any], grounded: str) -> tuple[str, str]:
    """Draw a finished rewrite; return the shown text and who wrote it."""
    if rewrite.get("used_model"):
        st.markdown(rewrite["text"])
        st.caption(f":material/verified: Rephrased by {rewrite['model']}, fact-checked.")
        return rewrite["text"], rewrite.get("source", "model")
    problems = "; ".join(rewrite.get("problems") or ()) or "no reason given"
    st.markdown(grounded)
    st.caption(
        f":material/block: Rewrite rejected by the fact-check: {problems}; showing the "
        "measured text."
    )
    if rewrite.get("draft"):
        with st.expander("What the language model wrote (rejected)"):
            st.text(rewrite["draft"])
    return grounded, "grounded"


def show_grounded(grounded: str, unavailable: str | None = None) -> tuple[str, str]:
    """Draw the measured text (with why there is no rewrite, if there should have been one)."""
    st.markdown(grounded)
    if unavailable is not None:
        st.caption(f":material/block: Language-model rewrite unavailable: {unavailable}")
    return grounded, "grounded"


def show_text(part: ExplainedPart, grounded: str) -> tuple[str, str]:
    """Draw the explanation text (grounded, or the language model's rewrite).

    Returns:
        The shown text and who wrote it (``grounded``, ``model`` or ``adapter``).
    """
    choice = part.language_model
    if choice is None:
        return show_grounded(grounded)
    reason = choice_unavailable(choice)
    if reason is not None:
        return show_grounded(grounded, reason)
    rewrite = stored_rewrite(part.explanation, choice)
    if rewrite is None:
        job = rewrite_job(part.prediction_id, choice)
        state = job.snapshot()
        if not state["done"]:
            st.markdown(grounded)
            poll_rewrite(job, choice.label)
            return grounded, "grounded"
        outcome: RewriteOutcome | None = state["result"]
        rewrite = outcome.rewrite if outcome is not None else None
        if rewrite is None:
            why = state["error"] or (outcome.reason if outcome is not None else None)
            return show_grounded(grounded, why)
    return show_rewrite(rewrite, grounded)


def text_explanation_panel(part: ExplainedPart) -> None:
    """The text panel: the stored explanation (maybe rephrased), or one computed now."""
    explanation = part.explanation
    stored = bool(explanation and explanation.get("facts") and explanation.get("text"))
    if explanation is None and part.anomaly_map_path is not None:
        try:
            explanation = explanation_on_the_fly(
                part.stored_path, part.anomaly_map_path, part.score, part.threshold
            )
        except (OSError, ValueError) as err:  # e.g. a missing map file
            st.caption(f"No explanation for {plain_markdown(part.name)}: {err}")
            return
    if not explanation or not explanation.get("text"):
        st.caption(f"No explanation for {plain_markdown(part.name)}.")
        return
    st.subheader(f"Why · {plain_markdown(part.name)}")
    if not stored:  # computed now: nothing to rephrase or to note
        st.markdown(explanation["text"])
        measured_facts(explanation, part.name)
        return
    shown_text, source = show_text(part, explanation["text"])
    measured_facts(explanation, part.name)
    explanation_notes(part.prediction_id, shown_text, source)


def measured_facts(explanation: dict[str, Any], name: str) -> None:
    """The measured facts behind the text of the part ``name``, folded away."""
    with st.expander(f"Measured facts · {plain_markdown(name)}"):
        st.json(explanation.get("facts") or {})


def explanation_panels(prediction_id: int | None) -> list[Callable[[], None]]:
    """The panels to draw for a prediction's image (an empty list when there is nothing)."""
    if prediction_id is None:
        return []
    with transaction() as session:
        prediction = db.get_prediction(session, prediction_id)
        if prediction is None:
            return []
        image = prediction.image
        classifier = active_version(session, image.project_id, ModelFamily.CLASSIFIER)
        stored_path = image.stored_path
        part = ExplainedPart(
            prediction_id=prediction.id,
            name=image.original_name,
            explanation=prediction.explanation,
            stored_path=stored_path,
            anomaly_map_path=prediction.anomaly_map_path,
            score=prediction.score,
            threshold=prediction.threshold,
            language_model=language_model_choice(session, image.project_id),
        )
        detector = prediction.model_version
        if classifier is not None:
            gradcam = partial(
                gradcam_panel,
                classifier.artifact_path,
                stored_path,
                f"v{classifier.model_number}.{classifier.revision}",
            )
        elif detector.kind == PATCHCORE_KIND:
            label = f"{detector.kind} v{detector.model_number}.{detector.revision}"
            gradcam = partial(anomaly_gradcam_panel, detector.artifact_path, stored_path, label)
        else:
            gradcam = None
    panels: list[Callable[[], None]] = [partial(text_explanation_panel, part)]
    if gradcam is not None:
        panels.append(partial(gradcam, part_name=part.name))
    return panels


def show_explanations(prediction_id: int | None) -> None:
    """Draw the explanation panels of a prediction, if there are any."""
    for panel in explanation_panels(prediction_id):
        panel()
