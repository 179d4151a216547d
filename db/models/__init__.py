"""The mapped tables. Importing this package registers every table on ``Base.metadata``."""

from db.models.accounts import User
from db.models.api_keys import ApiKey
from db.models.auth import AuthSession, SignInAttempt
from db.models.explanation_notes import ExplanationNote
from db.models.hot_folder_files import HotFolderFile
from db.models.images import Image, Prediction
from db.models.jobs import Job
from db.models.outbound_messages import OutboundMessage
from db.models.projects import ModelVersion, Project
from db.models.reviewer_labels import ReviewerLabel
from db.models.reviews import Review
from db.models.station_inspections import StationInspection

__all__ = [
    "ApiKey",
    "AuthSession",
    "ExplanationNote",
    "HotFolderFile",
    "Image",
    "Job",
    "ModelVersion",
    "OutboundMessage",
    "Prediction",
    "Project",
    "Review",
    "ReviewerLabel",
    "SignInAttempt",
    "StationInspection",
    "User",
]
