"""Loupe's storage layer: SQLAlchemy models, migrations, and functions named by subject.

Where things are:

* the schema: :mod:`db.models` (tables), :mod:`db.base` (enums), :mod:`db.migrations`;
* engine, the one sessionmaker, :func:`transaction`: :mod:`db.engine`, :mod:`db.settings`;
* accounts and roles: :mod:`db.users` (admins' changes checked there), :mod:`db.permissions`;
* projects and their write lock: :mod:`db.projects`, :mod:`db.project_lock`;
* images: :mod:`db.images` (rows, deduplicated by content), :mod:`db.image_store` (files);
* labels: :mod:`db.review_log` (the append-only writers, no role check),
  :mod:`db.labels` (the current label of an image or a project's images),
  :mod:`db.review_queue` (what to review next; recording and undoing, role-checked);
* predictions: :mod:`db.predictions` (latest per image / version);
* models: :mod:`db.model_versions`, :mod:`db.model_families`, :mod:`db.model_candidates`,
  :mod:`db.instant_updates`, :mod:`db.model_metrics` (their ``metrics`` JSON, typed),
  :mod:`db.model_lineages` (a model "v2" and its revisions "v2.14": numbers and labels);
  jobs: :mod:`db.jobs`, :mod:`db.job_workers`;
* managers' numbers: :mod:`db.dashboard`, :mod:`db.dashboard_activity`, :mod:`db.periods`;
  explanation notes: :mod:`db.explanation_notes`.

Writers without a role check (:mod:`db.review_log`, :mod:`db.images`) are not re-exported
here, and the UI may not import them (an import-linter contract).

Typical start-up::

    import db

    engine = db.init_db()                      # $LOUPE_DATABASE_URL or <data dir>/loupe.db
    Session = db.make_session_factory(engine)  # the one sessionmaker
    with Session() as session, session.begin():
        one_time_password = db.ensure_admin(session, os.environ.get("LOUPE_ADMIN_PASSWORD"))

This package never imports torch, Streamlit or ``adcore``.
"""

from db.base import (
    Base,
    DecisionRegion,
    ImageSource,
    JobStatus,
    Label,
    ModelStatus,
    Role,
    UTCDateTime,
    utcnow,
)
from db.engine import create_engine_for_url, init_db, make_session_factory, transaction
from db.errors import AppendOnlyError, ConflictError, MigrationError, StorageError
from db.image_store import absolute_image_path
from db.images import get_image
from db.labels import current_label, current_labels
from db.migrate import current_revision, downgrade, upgrade
from db.models import (
    ExplanationNote,
    Image,
    Job,
    ModelVersion,
    Prediction,
    Project,
    Review,
    ReviewerLabel,
    User,
)
from db.permissions import (
    CAN_MANAGE_MODELS,
    CAN_MANAGE_USERS,
    CAN_REVIEW,
    PermissionDenied,
    require_role,
)
from db.predictions import get_prediction
from db.projects import (
    activate_model_version,
    add_defect_type,
    create_project,
    get_project,
    list_model_versions,
    list_projects,
    register_model_version,
    set_threshold,
)
from db.settings import data_dir, database_url
from db.users import create_user, ensure_admin, get_user, verify_password

__all__ = [
    "CAN_MANAGE_MODELS",
    "CAN_MANAGE_USERS",
    "CAN_REVIEW",
    "AppendOnlyError",
    "ConflictError",
    "ExplanationNote",
    "Base",
    "Image",
    "ImageSource",
    "Job",
    "JobStatus",
    "DecisionRegion",
    "Label",
    "MigrationError",
    "ModelStatus",
    "ModelVersion",
    "PermissionDenied",
    "Prediction",
    "Project",
    "Review",
    "ReviewerLabel",
    "Role",
    "StorageError",
    "UTCDateTime",
    "User",
    "absolute_image_path",
    "activate_model_version",
    "add_defect_type",
    "create_engine_for_url",
    "transaction",
    "create_project",
    "create_user",
    "current_label",
    "current_labels",
    "current_revision",
    "data_dir",
    "database_url",
    "downgrade",
    "ensure_admin",
    "get_image",
    "get_prediction",
    "get_project",
    "get_user",
    "init_db",
    "list_model_versions",
    "list_projects",
    "make_session_factory",
    "register_model_version",
    "require_role",
    "set_threshold",
    "upgrade",
    "utcnow",
    "verify_password",
]
