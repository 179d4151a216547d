"""The detectors the Inspect page scores with, loaded once per server process.

Not a page. Cached with ``st.cache_resource`` (keyed by artifact path and runtime), so a loaded
detector is shared by all browser sessions of the process: the pages only read it.
"""

from __future__ import annotations

import streamlit as st


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_detector_cached(artifact_path: str, runtime: str = "torch"):
    """Load (and verify) a model version's scoring detector once per process and runtime.

    Shared, never mutated by pages. ``runtime="onnx"`` scores through the version's ONNX export,
    written on first use (see :func:`services.scoring.runtime.scoring_detector`).

    Returns:
        A :class:`services.scoring.runtime.ScoringDetector`.
    """
    from services.scoring.runtime import resolve_artifact, scoring_detector

    return scoring_detector(resolve_artifact(artifact_path), runtime)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
