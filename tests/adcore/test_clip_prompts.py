"""WinCLIP's compositional prompt ensemble: state words x templates, with the object name."""

from __future__ import annotations

import pytest

from adcore.detectors.clip.prompts import (
    ANOMALOUS_STATES,
    NORMAL_STATES,
    TEMPLATES,
    clean_object_name,
    prompt_ensemble,
)


def test_every_state_meets_every_template() -> None:
    normal, anomalous = prompt_ensemble("bottle")
    assert len(normal) == len(NORMAL_STATES) * len(TEMPLATES)
    assert len(anomalous) == len(ANOMALOUS_STATES) * len(TEMPLATES)
    assert len(set(normal)) == len(normal) and not set(normal) & set(anomalous)
    assert all("bottle" in p and "{" not in p for p in normal + anomalous)
    assert "a cropped photo of the flawless bottle." in normal
    assert "a photo of a bottle with defect for visual inspection." in anomalous


def test_generic_object_when_no_name() -> None:
    assert prompt_ensemble(None) == prompt_ensemble("  ") == prompt_ensemble("object")
    assert "a photo of the damaged object." in prompt_ensemble(None)[1]


def test_object_names_are_cleaned_or_refused() -> None:
    assert clean_object_name("metal_nut") == "metal nut"
    assert clean_object_name("  solar \n cell ") == "solar cell"
    with pytest.raises(ValueError, match="too long"):
        clean_object_name("x" * 61)
    with pytest.raises(ValueError, match="braces"):
        clean_object_name("{}")
