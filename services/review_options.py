"""Accepting a page of passed parts as good in one press, when a manager allows it.

The review queue may list parts the model *passed*: audit samples always, and near-threshold
parts when a near band is asked for (:data:`db.review_queue.DEFAULT_NEAR_MARGIN` is 0 since the
decision cascade: near-threshold parts are audited with known odds instead, so by default only
audit samples pass through the desk, and they are never accepted in bulk). When most passed
parts on a page are good, looking at each and pressing G is slow. A manager may
allow reviewers to accept the passed parts shown on the desk as good in one press
(:func:`accept_page_as_good`). It is still one review per part, by the reviewer, so the log,
the labels and every statistic read them like single reviews. Excluded, whatever the option:

* **flagged parts** (verdict defect): each needs its own look;
* **audit samples**: they measure how many defects pass unseen; accepting them in bulk, unseen,
  would bias that estimate towards zero.

The option is ``settings["review"] = {"accept_page_as_good": bool}`` per project (off by
default; :func:`review_options`, :func:`set_review_options`, managers only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db.base import Label
from db.models import Project, User
from db.permissions import CAN_MANAGE_MODELS, CAN_REVIEW, PermissionDenied, require_session_role
from db.review_queue import record_review, review_queue
from services.project_settings import store_option

REVIEW_KEY = "review"
MAX_PAGE = 100
"""Most parts one press may accept."""


@dataclass(frozen=True)
class ReviewOptions:
    """A project's review options.

    Attributes:
        accept_page_as_good: Reviewers may accept the passed parts on the desk as good in one
            press.
    """

    accept_page_as_good: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON stored under ``settings["review"]``."""
        return {"accept_page_as_good": self.accept_page_as_good}


def review_options(project: Project) -> ReviewOptions:
    """A project's review options (all off by default)."""
    stored = (project.settings or {}).get(REVIEW_KEY) or {}
    return ReviewOptions(accept_page_as_good=stored.get("accept_page_as_good") is True)


def set_review_options(
    session: Session, project_id: int, options: ReviewOptions, *, user: User
) -> ReviewOptions:
    """Change a project's review options (managers and admins only; the caller commits).

    Raises:
        PermissionDenied: If the user may not manage the project (nothing changes).
        LookupError: If the project does not exist.
    """
    require_session_role(
        session, user, *CAN_MANAGE_MODELS, message="Only managers can change the review options."
    )
    stored = ReviewOptions(accept_page_as_good=bool(options.accept_page_as_good))
    return review_options(store_option(session, project_id, REVIEW_KEY, stored.to_json()))


@dataclass(frozen=True)
class AcceptedPage:
    """What :func:`accept_page_as_good` did.

    Attributes:
        accepted: The parts labelled good, in the order given.
        skipped: ``(image id, why)`` for each part left alone.
    """

    accepted: tuple[int, ...]
    skipped: tuple[tuple[int, str], ...]

    @property
    def message(self) -> str:
        """One sentence for the reviewer."""
        text = f"Accepted {len(self.accepted)} passed part(s) as good."
        if self.skipped:
            text += f" {len(self.skipped)} left for a look of their own ({self.skipped[0][1]})."
        return text


def accept_page_as_good(
    session: Session, project_id: int, image_ids: Sequence[int], *, user: User
) -> AcceptedPage:
    """Label the given queued passed parts good: one review each, in the caller's transaction.

    Args:
        session: The caller's session (the caller commits: all the reviews or none).
        project_id: The project.
        image_ids: The parts shown on the reviewer's page.
        user: The reviewer.

    Returns:
        The parts accepted and the ones skipped with why (flagged, audit sample, no longer
        waiting in the queue).

    Raises:
        PermissionDenied: If the user may not review, or the project does not allow it.
        LookupError: If the project does not exist.
        ValueError: If more than :data:`MAX_PAGE` parts are given.
    """
    reviewer = require_session_role(session, user, *CAN_REVIEW)
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"No project with id {project_id}.")
    if not review_options(project).accept_page_as_good:
        raise PermissionDenied(
            "Accepting a page as good is off for this project: a manager can allow it."
        )
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    if len(ids) > MAX_PAGE:
        raise ValueError(f"At most {MAX_PAGE} parts can be accepted at once, got {len(ids)}.")
    queued = {item.image_id: item for item in review_queue(session, project_id)}
    accepted, skipped = [], []
    for image_id in ids:
        item = queued.get(image_id)
        if item is None:
            skipped.append((image_id, "no longer waiting for review"))
        elif item.verdict != Label.GOOD:
            skipped.append((image_id, "flagged by the model"))
        elif item.audit:
            skipped.append((image_id, "an audit sample"))
        else:
            record_review(session, image_id=image_id, user=reviewer, label=Label.GOOD.value)
            accepted.append(image_id)
    return AcceptedPage(tuple(accepted), tuple(skipped))
