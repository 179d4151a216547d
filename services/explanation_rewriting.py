"""Rephrase a stored prediction's explanation with the project's language model, once.

A project may turn on a local language model
(:func:`services.project_settings.language_model_setting`); its active ``explainer`` model
version, when there is one, is a LoRA adapter applied on top.
:func:`rewrite_prediction` loads that model once per process (:func:`cached_explainer`), rewrites
the prediction's stored facts (the rewrite is fact-checked, with the grounded text as fallback)
and stores the outcome in ``Prediction.explanation["rewrite"]``::

    {"text": str, "used_model": bool, "problems": [str, ...], "model": str,
     "source": "model" | "adapter", "seconds": float, "draft": str}

``draft`` is what the model wrote, kept for audit when the fact-check rejected it.

A vision-language model (:mod:`adcore.explain.vision_language`) also gets the part image and
its anomaly-map overlay (read from the data directory; text only when they cannot be read).
A stored rewrite by the same model is reused. A model that cannot be loaded gives a reason
(:attr:`RewriteOutcome.reason`), never an exception. No Streamlit here: the pages run
:func:`rewrite_prediction` in a background thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adcore.anomaly_maps import overlay_image
from adcore.errors import ExplainerUnavailable
from adcore.explain.facts import ExplanationFacts
from adcore.explain.language_model import (
    cached_explainer,
    language_model_unavailable,
    load_language_model,
)
from adcore.explain.vision_language import VisionLanguageExplainer
from adcore.map_scale import MapScale
from db import absolute_image_path
from db.model_families import ModelFamily, active_version
from db.model_lineages import label_of
from db.models import Prediction, Project
from services.map_scales import prediction_map_scale
from services.map_store import load_anomaly_map
from services.project_settings import language_model_setting

logger = logging.getLogger(__name__)

REWRITE_KEY = "rewrite"
"""Where the rewrite is kept inside ``Prediction.explanation``."""
MAX_NEW_TOKENS = 60
OVERLAY_OPACITY = 0.5
"""Weight of the anomaly-map colours in the overlay shown to a vision-language model."""


@dataclass(frozen=True)
class LanguageModelChoice:
    """The language model a project rephrases with: a source and an optional adapter.

    Attributes:
        source: ``"smollm2"``, a local model folder or a ``.gguf`` file.
        adapter_path: The active explainer version's adapter folder, or None.
        adapter_version: That version's number, or None.
        adapter_label: That version's lineage label (``"v4.0"``), or None.
    """

    source: str
    adapter_path: str | None = None
    adapter_version: int | None = None
    adapter_label: str | None = None

    @property
    def adapter_name(self) -> str:
        """The adapter as a person reads it: its lineage label, else its version number."""
        return self.adapter_label or f"v{self.adapter_version}"

    @property
    def key(self) -> str:
        """Cache key of the loaded model (source and adapter)."""
        return f"{self.source}|{self.adapter_path or ''}"

    @property
    def label(self) -> str:
        """What the rewrite is stored under and credited to, e.g. ``smollm2 + explainer v2.0``."""
        if self.adapter_version is None:
            return self.source
        return f"{self.source} + explainer {self.adapter_name}"

    @property
    def stored_labels(self) -> tuple[str, ...]:
        """The labels a rewrite by this choice may be stored under.

        :attr:`label`, and the one written before model lineages (``explainer v7``, the
        internal version number), so earlier rewrites stay valid.
        """
        if self.adapter_version is None:
            return (self.label,)
        return (self.label, f"{self.source} + explainer v{self.adapter_version}")

    def load(self) -> Any:
        """The explainer of this choice, loaded once per process (:func:`cached_explainer`).

        Raises:
            ExplainerUnavailable: If the model or the adapter cannot be loaded.
        """
        return cached_explainer(
            self.key, lambda: load_language_model(self.source, self.adapter_path)
        )

    @property
    def note_source(self) -> str:
        """The note source of a rewrite by this model: ``"adapter"`` or ``"model"``."""
        return "adapter" if self.adapter_path else "model"


SCORER_OVERRULED = (
    "The feedback scorer decided this part against the detector; the language model only "
    "knows the detector's facts, so the measured text (with the scorer's sentence) is shown."
)


@dataclass(frozen=True)
class RewriteOutcome:
    """What :func:`rewrite_prediction` did.

    Attributes:
        rewrite: The stored rewrite (see the module docstring), or None.
        reason: Why there is no rewrite (a sentence for the UI), or None.
        reused: Whether ``rewrite`` was already stored (nothing was generated).
    """

    rewrite: dict[str, Any] | None = None
    reason: str | None = None
    reused: bool = False


def language_model_choice(session: Session, project_id: int) -> LanguageModelChoice | None:
    """The project's language model and active explainer adapter; None when the option is off."""
    project = session.get(Project, project_id)
    if project is None:
        return None
    setting = language_model_setting(project)
    if not setting.enabled:
        return None
    adapter = active_version(session, project_id, ModelFamily.EXPLAINER)
    if adapter is None:
        return LanguageModelChoice(setting.source)
    return LanguageModelChoice(
        setting.source, str(adapter.artifact_path), adapter.version, label_of(adapter)
    )


def choice_unavailable(choice: LanguageModelChoice) -> str | None:
    """Why ``choice`` cannot be loaded, found without loading it; None when it looks usable."""
    reason = language_model_unavailable(choice.source)
    if reason is not None:
        return reason
    if choice.adapter_path and not (Path(choice.adapter_path) / "adapter_config.json").is_file():
        return (
            f"The active explainer {choice.adapter_name} has no adapter in "
            f"{choice.adapter_path} (adapter_config.json is missing)."
        )
    return None


def stored_rewrite(
    explanation: dict[str, Any] | None, choice: LanguageModelChoice
) -> dict[str, Any] | None:
    """The rewrite stored in ``explanation`` by the model of ``choice``, or None."""
    rewrite = (explanation or {}).get(REWRITE_KEY)
    if isinstance(rewrite, dict) and rewrite.get("model") in choice.stored_labels:
        return rewrite
    return None


def rewrite_prediction(
    Session: sessionmaker[Session],  # noqa: N803 - a session factory
    prediction_id: int,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> RewriteOutcome:
    """Rephrase one prediction's stored explanation with its project's language model.

    The model is loaded outside any transaction (it may take seconds) and only once per
    process and (source, adapter). A rewrite rejected by the fact-check is logged and stored
    too (``used_model`` false, with its ``problems``), so it is not generated again.

    Args:
        Session: The application's session factory.
        prediction_id: The prediction.
        max_new_tokens: Most tokens the model may generate.

    Returns:
        The stored (or reused) rewrite, or the reason there is none.
    """
    with Session() as session:
        prediction = session.get(Prediction, prediction_id)
        if prediction is None:
            return RewriteOutcome(reason=f"No prediction with id {prediction_id}.")
        facts_json = (prediction.explanation or {}).get("facts")
        if not facts_json:
            return RewriteOutcome(reason="This part has no stored facts to rephrase.")
        choice = language_model_choice(session, prediction.image.project_id)
        if choice is None:
            return RewriteOutcome(reason="The language-model option is off for this project.")
        reused = stored_rewrite(prediction.explanation, choice)
        decided_by_scorer = prediction.scorer_version_id is not None
        verdict = prediction.verdict
        image_path, map_path = prediction.image.stored_path, prediction.anomaly_map_path
        scale = prediction_map_scale(session, prediction_id) if reused is None else None
    if reused is not None:
        return RewriteOutcome(rewrite=reused, reused=True)
    try:
        facts = ExplanationFacts.from_json(facts_json)
    except (KeyError, TypeError, ValueError) as error:
        return RewriteOutcome(reason=f"The stored facts cannot be read: {error}")
    if decided_by_scorer and facts.verdict != verdict:
        return RewriteOutcome(reason=SCORER_OVERRULED)
    try:
        explainer = choice.load()
    except ExplainerUnavailable as error:
        return RewriteOutcome(reason=str(error))
    try:
        if isinstance(explainer, VisionLanguageExplainer):
            image, overlay = part_images(image_path, map_path, facts.threshold, scale)
            result = explainer.rewrite(
                facts, image=image, overlay=overlay, max_new_tokens=max_new_tokens
            )
        else:
            result = explainer.rewrite(facts, max_new_tokens=max_new_tokens)
    except (RuntimeError, ValueError, IndexError) as error:
        logger.exception("Rewrite of prediction %d by %s failed", prediction_id, choice.label)
        return RewriteOutcome(reason=f"The language model failed: {error}")
    rewrite = {
        "text": result.text,
        "used_model": result.used_model,
        "problems": list(result.fact_check.problems),
        "model": choice.label,
        "source": choice.note_source,
        "seconds": round(result.seconds, 3),
        "draft": result.draft,
    }
    if not result.used_model:
        logger.warning(
            "Prediction %d: the rewrite by %s was rejected by the fact-check (%s); the "
            "grounded text is kept.",
            prediction_id,
            choice.label,
            "; ".join(result.fact_check.problems),
        )
    with Session() as session, session.begin():
        prediction = session.get(Prediction, prediction_id)
        if prediction is None:
            return RewriteOutcome(reason=f"Prediction {prediction_id} was deleted meanwhile.")
        # A new dict: JSON columns do not track in-place changes.
        prediction.explanation = {**(prediction.explanation or {}), REWRITE_KEY: rewrite}
    return RewriteOutcome(rewrite=rewrite)


def part_images(
    stored_path: str,
    map_path: str | None,
    threshold: float | None,
    scale: MapScale | None = None,
) -> tuple[PILImage.Image | None, PILImage.Image | None]:
    """The stored part image and its anomaly-map overlay, for a vision-language model.

    Args:
        stored_path: ``Image.stored_path`` (relative to the data directory).
        map_path: ``Prediction.anomaly_map_path``, or None.
        threshold: The decision threshold (without ``scale``, the overlay's hottest colour is
            at least this).
        scale: The model version's map scale (:mod:`services.map_scales`), as inspectors see it.

    Returns:
        (image, overlay) as RGB PIL images; either is None when it cannot be read (logged).
    """
    try:
        with PILImage.open(absolute_image_path(stored_path)) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError) as error:
        logger.warning("Part image %s unreadable for the rewrite: %s", stored_path, error)
        return None, None
    if map_path is None:
        return image, None
    try:
        anomaly_map = load_anomaly_map(map_path)
        pixels = overlay_image(
            np.asarray(image), anomaly_map, OVERLAY_OPACITY, scale=scale, threshold=threshold
        )
    except (OSError, ValueError) as error:
        logger.warning("Anomaly map %s unreadable for the rewrite: %s", map_path, error)
        return image, None
    return image, PILImage.fromarray(pixels)


def warm_up_language_models(
    Session: sessionmaker[Session],  # noqa: N803 - a session factory
) -> list[str]:
    """Load every project's enabled language model into the process cache, ahead of use.

    Meant for a background thread at server start, so the first part an inspector opens does
    not wait for the model to load. Models that cannot be loaded are skipped (and logged).

    Args:
        Session: The application's session factory.

    Returns:
        The labels of the models now loaded.
    """
    with Session() as session:
        choices = {}
        for project_id in session.scalars(select(Project.id)):
            choice = language_model_choice(session, project_id)
            if choice is not None and choice_unavailable(choice) is None:
                choices[choice.key] = choice
    loaded = []
    for choice in choices.values():
        try:
            choice.load()
        except ExplainerUnavailable as error:
            logger.warning("Language model %s not preloaded: %s", choice.label, error)
            continue
        loaded.append(choice.label)
        logger.info("Language model %s loaded ahead of use", choice.label)
    return loaded
