"""Page tasks: short work a page runs in a server thread, and instant learning after a review.

Not the job queue (:mod:`workers`, durable rows run by a worker process): a page task lives in
one browser session, e.g. a first training from a folder, an explanation rewrite or an instant
update. Not a page (imported by ``pages/models.py``, ``pages/review.py``, ``pages/inspect.py``
and ``pages/explanation_panels.py``). Task threads never call ``st.*``: they update a
:class:`TaskProgress` under its lock, and a fragment with ``run_every`` polls it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import streamlit as st

import db
from pages.common import USER_KEY, flash, models_root, session_factory

log = logging.getLogger("loupe.app")

LEARNING_KEY = "instant_learning_task"


class TaskProgress:
    """Progress of a page task, written by its thread and read by the UI.

    The worker never calls ``st.*``; it only updates this object under its lock. A fragment
    with ``run_every`` polls :meth:`snapshot`.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self._lock = threading.Lock()
        self._fraction = 0.0
        self._message = "Starting…"
        self._done = False
        self._error: str | None = None
        self._result: object = None

    def update(self, fraction: float, message: str) -> None:
        """Progress callback (``progress(fraction, message)``)."""
        with self._lock:
            self._fraction = min(max(float(fraction), 0.0), 1.0)
            self._message = message

    def finish(self, result: object = None, error: str | None = None) -> None:
        """Mark the job as done, with a result or an error message."""
        with self._lock:
            self._done = True
            self._result = result
            self._error = error
            if error is None:
                self._fraction = 1.0

    def snapshot(self) -> dict:
        """``{"fraction", "message", "done", "error", "result"}`` at this moment."""
        with self._lock:
            return {
                "fraction": self._fraction,
                "message": self._message,
                "done": self._done,
                "error": self._error,
                "result": self._result,
            }


def start_task(description: str, work: Callable[[TaskProgress], object]) -> TaskProgress:
    """Run ``work(progress)`` in a daemon thread; return the progress object to poll."""
    progress = TaskProgress(description)

    def run() -> None:
        try:
            result = work(progress)
        except Exception as err:  # reported to the UI, never raised into Streamlit
            log.exception("%s failed", description)
            progress.finish(error=f"{type(err).__name__}: {err}")
        else:
            progress.finish(result=result)

    threading.Thread(target=run, name=f"loupe-{description}", daemon=True).start()
    return progress


def learn_after_review(project_id: int, image_id: int, label: str, flagged: bool) -> None:
    """After a review: when it teaches the model (a Good on a flagged part), learn in a task.

    The rule is :func:`services.review_learning.learns_instantly`; the task runs
    :func:`services.review_learning.learn_from_good_review` (the instant update, then the
    waiting parts re-scored). The signed-in user must be in session state.
    """
    from services.review_learning import learn_from_good_review, learns_instantly

    if not learns_instantly(label, flagged):
        return

    factory, models, data = session_factory(), models_root(), db.data_dir()
    user_id = st.session_state[USER_KEY]["id"]

    def work(progress: TaskProgress) -> object:
        return learn_from_good_review(
            factory,
            project_id=project_id,
            image_id=image_id,
            user_id=user_id,
            models_dir=models,
            data_dir=data,
            progress=progress.update,
        )

    st.session_state[LEARNING_KEY] = start_task("instant learning", work)


def show_instant_learning() -> None:
    """Progress of a running instant update; its outcome is flashed when it ends."""
    if st.session_state.get(LEARNING_KEY) is None:
        return

    @st.fragment(run_every=1.0)
    def poll() -> None:
        job = st.session_state.get(LEARNING_KEY)
        if job is None:
            return
        state = job.snapshot()
        if not state["done"]:
            st.progress(state["fraction"], text=f"Learning from the good part: {state['message']}")
            return
        st.session_state.pop(LEARNING_KEY, None)
        if state["error"]:
            flash(f"Instant learning failed: {state['error']}", "warning")
        else:
            flash(state["result"].message, "info")
        st.rerun()  # the whole page: the queue and the active model have changed

    poll()
