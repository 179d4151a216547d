"""Grad-CAM panels under a part (not a page: :mod:`pages.explanation_panels` places them).

* **Classifier**: when the project has an active supervised classifier, which regions pushed
  its p(defect) up (:func:`adcore.gradcam.defect_heatmap`).
* **Detector** (otherwise, for PatchCore versions, so from the demo's first minute, with no
  training): which regions' backbone features raised the detector's anomaly above the normal
  level of its good parts (:func:`adcore.gradcam.anomaly_gradcam`).

Each panel names its part and says which model and which output its map explains. The work
runs in a background thread and the panel fills in when it is ready
(:mod:`pages.background_views`: results kept per model version and image, shared by every
session); Grad-CAM uses a detector instance of its own (it hooks a layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

import db
from pages.background_views import show_when_ready
from pages.part_display import plain_markdown
from services.scoring.runtime import resolve_artifact

GRADCAM_OPACITY = 0.45


@dataclass(frozen=True)
class GradCamView:
    """What the classifier's Grad-CAM panel shows for one image and one classifier version."""

    overlay: np.ndarray  # (H, W, 3) uint8
    probability: float
    threshold: float | None
    defect_type: str
    defect_type_probability: float
    n_types: int


@dataclass(frozen=True)
class AnomalyGradCamView:
    """What the detector's Grad-CAM panel shows for one image and one detector version."""

    overlay: np.ndarray  # (H, W, 3) uint8
    explained: float
    target: str
    layer: str


@st.cache_resource(show_spinner=False, max_entries=2)
def load_classifier_cached(artifact_path: str):
    """Load (and verify) a saved classifier once per process; shared, never mutated."""
    from adcore.detectors.registry import load_any_model

    return load_any_model(resolve_artifact(artifact_path), device="cpu")


@st.cache_resource(show_spinner=False, max_entries=2)
def load_gradcam_detector(artifact_path: str):
    """A detector instance for Grad-CAM only (its hooks never touch the scoring instance)."""
    from adcore.detectors.registry import load_detector

    return load_detector(resolve_artifact(artifact_path), device="cpu")


def gradcam_view(artifact_path: str, stored_path: str) -> GradCamView:
    """Classify one stored image and draw its Grad-CAM overlay (in a background thread)."""
    from adcore.gradcam import defect_heatmap, heatmap_overlay

    pixels = stored_pixels(stored_path)
    classifier = load_classifier_cached(artifact_path)
    prediction = classifier.predict([pixels])[0]
    heatmap = defect_heatmap(classifier, pixels)
    return GradCamView(
        overlay=heatmap_overlay(pixels, heatmap),
        probability=prediction.probability,
        threshold=prediction.threshold,
        defect_type=prediction.defect_type,
        defect_type_probability=prediction.defect_type_probability,
        n_types=len(classifier.defect_types),
    )


def anomaly_gradcam_view(artifact_path: str, stored_path: str) -> AnomalyGradCamView:
    """Grad-CAM of a detector version's anomaly on one stored image (in a background thread)."""
    from adcore.gradcam import anomaly_gradcam, heatmap_overlay

    pixels = stored_pixels(stored_path)
    explained = anomaly_gradcam(load_gradcam_detector(artifact_path), pixels)
    return AnomalyGradCamView(
        overlay=heatmap_overlay(pixels, explained.heatmap, GRADCAM_OPACITY),
        explained=explained.explained,
        target=explained.target,
        layer=explained.layer,
    )


def stored_pixels(stored_path: str) -> np.ndarray:
    """A stored image's pixels (for a background thread: raises instead of drawing a warning)."""
    from adcore.image_io import load_image

    return load_image(db.absolute_image_path(stored_path))


def gradcam_panel(
    artifact_path: str, stored_path: str, version_label: str, *, part_name: str | None = None
) -> None:
    """The classifier's Grad-CAM panel: overlay on the left, its judgement on the right."""
    _panel("classifier", artifact_path, stored_path, version_label, part_name)


def anomaly_gradcam_panel(
    artifact_path: str, stored_path: str, version_label: str, *, part_name: str | None = None
) -> None:
    """The detector's Grad-CAM panel: overlay on the left, what it explains on the right."""
    _panel("detector", artifact_path, stored_path, version_label, part_name)


def _panel(
    model: str, artifact_path: str, stored_path: str, version_label: str, part_name: str | None
) -> None:
    """A Grad-CAM panel of a ``"classifier"`` or ``"detector"`` version; fills in when ready.

    ``part_name`` (the part's file name) is said in the heading and while the map is computed.
    """
    compute, draw, failed = {
        "classifier": (
            gradcam_view,
            draw_classifier_view,
            "The classifier cannot explain this part",
        ),
        "detector": (anomaly_gradcam_view, draw_anomaly_view, "Grad-CAM cannot explain this part"),
    }[model]
    name = plain_markdown(part_name) if part_name else None
    st.subheader(f"Grad-CAM of {model} {version_label}" + (f" · {name}" if name else ""))
    show_when_ready(
        (model, artifact_path, stored_path),
        lambda: compute(artifact_path, stored_path),
        lambda view: draw(view, version_label),
        waiting=f"Computing the Grad-CAM of {model} {version_label}"
        + (f" for {name}…" if name else "…"),
        failed=failed,
    )


def draw_classifier_view(view: GradCamView, version_label: str) -> None:
    """The classifier's Grad-CAM overlay and judgement."""
    left, right = st.columns(2)
    left.image(view.overlay, caption="Grad-CAM (red: argued for a defect)", width="stretch")
    line = f"p(defect) **{view.probability:.3f}**"
    if view.threshold is not None:
        verdict = "DEFECT" if view.probability >= view.threshold else "GOOD"
        line += f" vs threshold **{view.threshold:.3f}** → **{verdict}**"
    right.markdown(line)
    if view.n_types > 1:
        right.markdown(
            f"Most likely type: **{view.defect_type}** ({view.defect_type_probability:.0%})"
        )
    right.caption(
        f"What this explains: classifier {version_label}'s defect logit (its p(defect)). "
        "Grad-CAM weighs the classifier's last convolutional features by how much they raised "
        "it; it explains the classifier, not the anomaly score above."
    )


def draw_anomaly_view(view: AnomalyGradCamView, version_label: str) -> None:
    """The detector's Grad-CAM overlay and what it explains."""
    left, right = st.columns(2)
    if view.explained > 0:
        left.image(view.overlay, caption="Grad-CAM (red: raised the anomaly most)", width="stretch")
    else:
        left.info("Nothing in this part is above the normal level: nothing to explain.")
    amount = f"{view.explained:,.0f}" if abs(view.explained) >= 1000 else f"{view.explained:.4g}"
    right.markdown(
        f"**What this explains:** detector {version_label}'s {view.target}: **{amount}** here."
    )
    right.caption(
        f"Grad-CAM weighs the activations of {view.layer} (the deepest backbone layer of each "
        "network the detector reads) by how much they raised that number; red regions' features "
        "raised it most. It is scaled per part: it shows where the anomaly comes from, not how "
        "much there is (the anomaly map above shows that, on the version's one scale). No "
        "classifier is active in this project; once one is, its Grad-CAM is shown instead."
    )
