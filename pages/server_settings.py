"""The workbench server's settings read from the environment: models, demo, first admin.

Not a page. ``app.py`` reads them at start-up (seeding the demo, creating the first admin,
starting the job worker); the Models page saves the models it trains under :func:`models_root`.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

MODELS_DIR_ENV = "LOUPE_MODELS_DIR"
SKIP_DEMO_ENV = "LOUPE_SKIP_DEMO"
ADMIN_PASSWORD_ENV = "LOUPE_ADMIN_PASSWORD"


def models_root() -> Path:
    """Where trained models are written: ``$LOUPE_MODELS_DIR`` or ``./models``."""
    return Path(os.environ.get(MODELS_DIR_ENV) or "models")


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
