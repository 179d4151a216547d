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
from db.engine import create_engine_for_url, init_db, make_session_factory
from db.errors import AppendOnlyError, MigrationError, StorageError
from db.image_store import absolute_image_path
from db.migrate import current_revision, downgrade, upgrade
from db.models import Image, Job, ModelVersion, Prediction, Project, Review, User
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
    "AppendOnlyError",
    "Base",
    "Image",
    "ImageSource",
    "Job",
    "JobStatus",
    "Label",
    "MigrationError",
    "ModelStatus",
    "ModelVersion",
    "Prediction",
    "Project",
    "Review",
    "Role",
    "StorageError",
    "UTCDateTime",
    "User",
    "Verdict",
    "absolute_image_path",
    "add_review",
    "counting_review",
    "create_engine_for_url",
    "create_user",
    "current_label",
    "current_labels_query",
    "current_revision",
    "data_dir",
    "database_url",
    "downgrade",
    "ensure_admin",
    "get_or_create_image",
    "init_db",
    "make_session_factory",
    "undo_last_review",
    "upgrade",
    "utcnow",
    "verify_password",
]
