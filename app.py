"""Loupe workbench: the Streamlit entry point and router.

Run with ``streamlit run serve.py`` (it serves this script with the session-cookie routes;
``streamlit run app.py`` works too, but a sign-in then lasts only as long as the tab). Order of
a run: page config, one-time start-up (migrations, first admin, demo project), the signed-in
user (this tab's session, or the browser's session cookie) and the shared sidebar (project
picker), then ``st.navigation`` with only the pages the user's role may use. Signed-out
visitors get the sign-in page only.

Environment: ``LOUPE_DATA_DIR`` / ``LOUPE_DATABASE_URL`` (storage), ``LOUPE_ADMIN_PASSWORD``
(first admin's password; a random one is printed once to the server log otherwise),
``LOUPE_SKIP_DEMO=1`` (do not seed the demo project), ``LOUPE_MODELS_DIR`` (default ``models``),
``LOUPE_NO_WORKER=1`` (do not start and watch over a background job worker; run
``python -m loupe worker`` yourself), ``LOUPE_WARM_UP=0`` (load the projects' language models on
first use instead of in a background thread at start), ``LOUPE_BACKGROUND_DELAY`` (seconds
before the worker and the warm-up start, default 8, so the first page is drawn first). Sessions
and the sign-in throttle:
``LOUPE_SESSION_HOURS``, ``LOUPE_SIGN_IN_LOCK_SECONDS``, ``LOUPE_SIGN_IN_DELAY_SECONDS`` (see
:mod:`services.sign_in`).
"""

from __future__ import annotations

import logging
import os
import time

import streamlit as st

import db
from db.projects import list_projects
from pages.account_panel import password_change_popover
from pages.browser_session import run_cookie_exchange
from pages.db_session import session_factory_for, transaction
from pages.routing import LOGIN_PAGE, pages_for_role, routed
from pages.server_settings import ADMIN_PASSWORD_ENV, SKIP_DEMO_ENV, models_root
from pages.tab_state import PICKER_KEY, PROJECT_KEY, refresh_user, sign_out
from pages.worker_status import WORKER_COMMAND, no_worker, worker_problem

log = logging.getLogger("loupe.app")
# Set to 0 to load language models only when first used (not at server start). A comment, not
# a docstring: Streamlit's magic would render a bare string of a page script on the page.
WARM_UP_ENV = "LOUPE_WARM_UP"
BACKGROUND_DELAY_ENV = "LOUPE_BACKGROUND_DELAY"
DEFAULT_BACKGROUND_DELAY = 8.0


@st.cache_resource(show_spinner=False)
def bootstrap(url: str) -> None:
    """Migrate the database and make sure an admin exists (once per server process)."""
    factory = session_factory_for(url)
    with factory() as session, session.begin():
        generated = db.ensure_admin(session, os.environ.get(ADMIN_PASSWORD_ENV))
    if generated:
        # Printed once, to the server's log only: never shown in the UI.
        message = (
            f"Loupe created the user 'admin' with the one-time password: {generated}  "
            f"(set {ADMIN_PASSWORD_ENV} to choose it; change it after signing in)"
        )
        print(message, flush=True)


@st.cache_resource(show_spinner="Preparing the demo project…")
def seed_demo_once(url: str) -> str | None:
    """Seed the demo project once per server process; return an error message or None."""
    from services.demo import seed_demo

    try:
        seed_demo(session_factory_for(url), models_root=models_root())
    except Exception as err:  # the workbench stays usable without the demo
        log.exception("Seeding the demo project failed")
        return f"{type(err).__name__}: {err}"
    return None


def background_start_delay() -> float:
    """Seconds the server waits before starting its heavy background work (default 8).

    The job worker and the language-model warm-up each load torch models on the same cores as
    the first page; waiting lets the sign-in page be drawn first. ``$LOUPE_BACKGROUND_DELAY``.
    """
    try:
        return max(0.0, float(os.environ.get(BACKGROUND_DELAY_ENV, DEFAULT_BACKGROUND_DELAY)))
    except ValueError:
        return DEFAULT_BACKGROUND_DELAY


@st.cache_resource(show_spinner=False)
def start_worker_once(url: str, data_dir: str, models_dir: str) -> None:
    """Start the worker supervisor (once per server process): it keeps a job worker running.

    Its thread checks every two seconds and restarts a dead worker (:mod:`workers.supervisor`).
    """
    from workers.supervisor import start_supervisor

    start_supervisor(url, data_dir, models_dir, first_check_delay=background_start_delay())


@st.cache_resource(show_spinner=False)
def warm_up_language_models_once(url: str) -> None:
    """Load the projects' enabled language models in a background thread (once per process).

    The thread only fills :func:`adcore.explain.language_model.cached_explainer`; it never
    calls ``st.*``. Until it is done, the Why panel shows the measured text.
    """
    import threading

    def run() -> None:
        time.sleep(background_start_delay())  # the first page is drawn before the load
        try:  # imported here: it loads torch, which the first page must not wait for
            from services.explanation_rewriting import warm_up_language_models

            warm_up_language_models(session_factory_for(url))
        except Exception:  # a failed warm-up only means the first rewrite loads the model
            log.exception("Preloading the language models failed")

    threading.Thread(target=run, name="loupe-language-model-warm-up", daemon=True).start()


def start_up() -> None:
    """Bootstrap the database and start the app's background services.

    Unless switched off, seeds the demo, warms up the language models and starts the job
    worker; problems are shown in the sidebar.
    """
    url = db.database_url()
    try:
        bootstrap(url)
    except ValueError as err:  # e.g. LOUPE_ADMIN_PASSWORD too short
        st.error(f"Loupe cannot start: {err}")
        st.stop()
    if os.environ.get(SKIP_DEMO_ENV) != "1":
        problem = seed_demo_once(url)
        if problem:
            st.sidebar.warning(f"The demo project is not available: {problem}")
    if os.environ.get(WARM_UP_ENV) != "0":
        warm_up_language_models_once(url)
    if not no_worker():
        start_worker_once(url, str(db.data_dir()), str(models_root()))
        problem = worker_problem(url)
        if problem:
            st.sidebar.warning(
                f"The background job worker could not be started ({problem}): the app tries "
                f"again every few seconds; queued jobs wait, or run `{WORKER_COMMAND}` on the "
                "server."
            )


def project_picker() -> None:
    """The shared project picker; the choice lives in ``st.session_state[PROJECT_KEY]``."""
    with transaction() as session:
        projects = {project.id: project.name for project in list_projects(session)}
    if not projects:
        st.session_state[PROJECT_KEY] = None
        st.sidebar.caption("No projects yet.")
        return
    ids = list(projects)
    if st.session_state.get(PICKER_KEY) not in ids:  # first run, or the project is gone
        current = st.session_state.get(PROJECT_KEY)
        st.session_state[PICKER_KEY] = current if current in ids else ids[0]
    chosen = st.sidebar.selectbox("Project", ids, format_func=projects.get, key=PICKER_KEY)
    st.session_state[PROJECT_KEY] = chosen


def sidebar(user: dict) -> None:
    """The signed-in user, the project picker, the password change and the sign-out button."""
    st.sidebar.markdown(f"**{user['name']}** · {user['role']}")
    project_picker()
    password_change_popover()
    if st.sidebar.button("Sign out", icon=":material/logout:", key="sign_out"):
        sign_out()
        st.rerun()
    run_cookie_exchange()  # once after a sign-in: the browser fetches its session cookie


st.set_page_config(page_title="Loupe", page_icon=":material/search:", layout="wide")
start_up()
user = refresh_user()
if user is None:
    pages = [st.Page(LOGIN_PAGE.path, title=LOGIN_PAGE.title, icon=LOGIN_PAGE.icon)]
else:
    sidebar(user)
    pages = [
        st.Page(spec.path, title=spec.title, icon=spec.icon)
        for spec in pages_for_role(user["role"])
    ]
page = st.navigation(pages)
with routed():
    page.run()
