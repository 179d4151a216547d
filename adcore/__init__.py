"""Loupe detection core: image input, datasets, backbones, detectors, metrics and thresholds.

This package never imports Streamlit; the workbench (``app.py``, ``pages/``) builds on it.
"""

__version__ = "0.1.0"
