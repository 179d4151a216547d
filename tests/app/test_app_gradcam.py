"""Grad-CAM in Review and Inspect: of the active classifier, else of the PatchCore detector."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from apptest_support import Workbench, first_queued, run_until_filled, signed_in_app

import db
from adcore.classifier import Classifier, ClassifierConfig
from db.projects import activate_model_version, register_model_version


@pytest.fixture
def with_classifier(workbench: Workbench, tmp_path: Path) -> Workbench:
    """The workbench plus an active (random-weight) classifier version."""
    classifier = Classifier(
        ClassifierConfig(image_size=64), defect_types=("dent", "scratch"), pretrained=False
    ).with_threshold(0.5)
    directory = tmp_path / "classifier" / "v1"
    classifier.save(directory)
    with workbench.factory() as session, session.begin():
        version = register_model_version(
            session,
            project_id=workbench.project_id,
            kind="classifier",
            artifact_path=str(directory),
            metrics={},
            threshold=0.5,
            training_snapshot={},
        )
        activate_model_version(session, version_id=version.id, user=None, system=True)
    return workbench


def test_review_shows_grad_cam_when_a_classifier_is_active(with_classifier: Workbench) -> None:
    at = signed_in_app("inspector")
    run_until_filled(at.switch_page("pages/review.py"))

    assert not at.exception, at.exception
    assert any("Grad-CAM" in header.value for header in at.subheader)
    assert any(m.value.startswith("p(defect)") for m in at.markdown)
    assert any("Most likely type" in m.value for m in at.markdown)
    with with_classifier.factory() as session:  # the detector stays the active scorer
        project = session.get(db.Project, with_classifier.project_id)
        assert project.active_model_version_id == with_classifier.version_id


def test_without_a_classifier_the_detector_is_explained(workbench: Workbench) -> None:
    at = signed_in_app("inspector")
    run_until_filled(at.switch_page("pages/review.py"))

    assert not at.exception, at.exception
    [heading] = [h.value for h in at.subheader if "Grad-CAM" in h.value]
    name = next(n for n, i in workbench.image_ids.items() if i == first_queued(workbench).image_id)
    assert heading.startswith("Grad-CAM of detector patchcore v"), heading
    assert heading.endswith(f" · {name}"), heading  # the panel names its part
    said = [m.value for m in at.markdown if m.value.startswith("**What this explains:**")]
    assert said and "patchcore v1.0's anomaly above the normal level" in said[0]
    assert any("efficientnet_lite0 blocks.4" in c.value for c in at.caption)  # the tiny model


def test_slow_grad_cam_never_holds_the_page(
    workbench: Workbench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pages import gradcam_panel

    release = threading.Event()
    real = gradcam_panel.anomaly_gradcam_view

    def slow(artifact_path: str, stored_path: str):
        release.wait(timeout=60)
        return real(artifact_path, stored_path)

    monkeypatch.setattr(gradcam_panel, "anomaly_gradcam_view", slow)
    at = signed_in_app("inspector")
    at.switch_page("pages/review.py").run()  # returns although Grad-CAM is still working
    assert not at.exception, at.exception
    assert any("fills in when ready" in c.value for c in at.caption)
    assert not any(m.value.startswith("**What this explains:**") for m in at.markdown)

    release.set()
    run_until_filled(at)
    assert any(m.value.startswith("**What this explains:**") for m in at.markdown)
