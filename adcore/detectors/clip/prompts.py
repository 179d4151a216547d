"""WinCLIP's compositional prompt ensemble: state words crossed with templates.

Jeong et al., "WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation", CVPR 2023.
Each state word (``"flawless {}"``, ``"{} with defect"``...) is filled with the object name, then
put into every template (``"a cropped photo of the {}."``...). The text embedding of a state is
the mean of the normalised embeddings of all its prompts.
"""

from __future__ import annotations

import re

NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
"""State words for a normal part (WinCLIP, Table 7)."""

ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
"""State words for an anomalous part (WinCLIP, Table 7)."""

TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
"""Photo templates (WinCLIP, Table 8)."""

GENERIC_OBJECT = "object"
MAX_OBJECT_NAME = 60


def clean_object_name(name: str | None) -> str:
    """The object name used in prompts: trimmed, single-spaced, ``"object"`` when empty.

    Underscores become spaces (MVTec folder names such as ``metal_nut``).

    Raises:
        ValueError: If the name is longer than :data:`MAX_OBJECT_NAME` characters or holds
            braces (they would break the templates).
    """
    text = re.sub(r"\s+", " ", (name or "").replace("_", " ")).strip()
    if not text:
        return GENERIC_OBJECT
    if len(text) > MAX_OBJECT_NAME:
        raise ValueError(f"Object name is too long for a prompt (max {MAX_OBJECT_NAME} chars)")
    if "{" in text or "}" in text:
        raise ValueError("Object name must not contain braces")
    return text


def state_prompts(states: tuple[str, ...], object_name: str | None = None) -> list[str]:
    """Every template filled with every state of the object.

    Args:
        states: State words with one ``{}`` for the object name.
        object_name: The project's object, or None for the generic ``"object"``.

    Returns:
        ``len(states) * len(TEMPLATES)`` prompts, state-major.
    """
    name = clean_object_name(object_name)
    return [template.format(state.format(name)) for state in states for template in TEMPLATES]


def prompt_ensemble(object_name: str | None = None) -> tuple[list[str], list[str]]:
    """(normal prompts, anomalous prompts) for an object name."""
    return state_prompts(NORMAL_STATES, object_name), state_prompts(ANOMALOUS_STATES, object_name)
