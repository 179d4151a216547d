"""Loupe's storage layer: SQLAlchemy models, migrations, and small repository functions.

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
    ImageSource,
    JobStatus,
    Label,
    ModelStatus,
    Role,
    UTCDateTime,
    Verdict,
    utcnow,
)
from db.engine import create_engine_for_url, init_db, make_session_factory, transaction
from db.errors import AppendOnlyError, ConflictError, MigrationError, StorageError
from db.image_store import absolute_image_path
from db.migrate import current_revision, downgrade, upgrade
from db.models import ExplanationNote, Image, Job, ModelVersion, Prediction, Project, Review, User
from db.permissions import (
    CAN_MANAGE_MODELS,
    CAN_MANAGE_USERS,
    CAN_REVIEW,
    PermissionDenied,
    require_role,
)
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
from db.repository import (
    add_review,
    counting_review,
    current_label,
    current_labels_query,
    get_or_create_image,
    undo_last_review,
)
from db.settings import data_dir, database_url
from db.users import create_user, ensure_admin, verify_password

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
    "Label",
    "MigrationError",
    "ModelStatus",
    "ModelVersion",
    "PermissionDenied",
    "Prediction",
    "Project",
    "Review",
    "Role",
    "StorageError",
    "UTCDateTime",
    "User",
    "Verdict",
    "absolute_image_path",
    "activate_model_version",
    "add_defect_type",
    "add_review",
    "counting_review",
    "create_engine_for_url",
    "transaction",
    "create_project",
    "create_user",
    "current_label",
    "current_labels_query",
    "current_revision",
    "data_dir",
    "database_url",
    "downgrade",
    "ensure_admin",
    "get_or_create_image",
    "get_project",
    "init_db",
    "list_model_versions",
    "list_projects",
    "make_session_factory",
    "register_model_version",
    "require_role",
    "set_threshold",
    "undo_last_review",
    "upgrade",
    "utcnow",
    "verify_password",
]
