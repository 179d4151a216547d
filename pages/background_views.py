"""Slow panels that fill in when ready: their work runs in a server thread, shared per process.

A panel that needs seconds of model work (Grad-CAM, a first model load) must not keep the page
running: while a Streamlit run is busy, the page is stale and a click on another page waits.
:func:`show_when_ready` starts the work in a thread (once per key and server process, shared
by every browser session, the :class:`pages.page_tasks.TaskProgress` of :func:`background`),
draws a placeholder line meanwhile, and polls with a fragment that re-runs the page once the
work has ended. The work never calls ``st.*``. Not a page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st

from pages.page_tasks import TaskProgress, start_task

POLL_SECONDS = 1.0
MAX_KEPT = 256
"""Finished results kept per server process (oldest dropped first)."""


@st.cache_resource(show_spinner=False)
def _registry() -> tuple[threading.Lock, OrderedDict[Hashable, TaskProgress]]:
    return threading.Lock(), OrderedDict()


def background(key: Hashable, work: Callable[[], Any], description: str) -> TaskProgress:
    """The task computing ``work()`` for ``key``: started on the first call in this process."""
    lock, tasks = _registry()
    with lock:
        task = tasks.get(key)
        if task is None or task.snapshot()["error"]:  # a failed one is tried again
            task = start_task(description, lambda _progress: work())
            tasks[key] = task
        tasks.move_to_end(key)
        while len(tasks) > MAX_KEPT:
            tasks.popitem(last=False)
    return task


def show_when_ready(
    key: Hashable,
    work: Callable[[], Any],
    draw: Callable[[Any], None],
    *,
    waiting: str,
    failed: str,
) -> None:
    """Draw ``draw(work())`` when the result is there; meanwhile a line, and poll.

    Args:
        key: What the result depends on (e.g. model version and image).
        work: The computation (runs in a thread; no ``st.*``).
        draw: Draws the result (runs in the page).
        waiting: The line shown while it runs.
        failed: The start of the warning shown when it failed (the error follows).
    """
    task = background(key, work, waiting)
    state = task.snapshot()
    if state["done"]:
        if state["error"]:
            st.warning(f"{failed}: {state['error']}")
        else:
            draw(state["result"])
        return

    @st.fragment(run_every=POLL_SECONDS)
    def poll() -> None:
        if task.snapshot()["done"]:
            st.rerun()  # the whole page, which now draws the result
        st.caption(f":material/hourglass_top: {waiting} (fills in when ready)")

    poll()
