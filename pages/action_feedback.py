"""How a user action's outcome reaches the user: flashed messages and the errors worth one.

Not a page. A button callback runs before the page is drawn, so it queues its message with
:func:`flash` and the page draws the queue with :func:`show_flashes`. An action that ends with
one of :data:`ACTION_ERRORS` gets a message (``flash(str(err), "error")``), not a traceback.
"""

from __future__ import annotations

import streamlit as st

import db

#: Errors a user action can end with that deserve a message rather than a traceback.
ACTION_ERRORS: tuple[type[BaseException], ...] = (
    PermissionError,
    db.StorageError,
    ValueError,
    LookupError,
)


def flash(message: str, kind: str = "success") -> None:
    """Queue a message for the next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    """Draw and forget the queued messages."""
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


if __name__ == "__main__":  # run as a page by the legacy pages/ handling: go to the router
    st.switch_page("app.py")
