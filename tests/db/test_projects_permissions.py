"""Projects, model versions and role checks: roles are enforced by the service functions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

import db
from db import (
    CAN_MANAGE_MODELS,
    CAN_MANAGE_USERS,
    CAN_REVIEW,
    ModelVersion,
    PermissionDenied,
    Project,
    StorageError,
    User,
    activate_model_version,
    add_defect_type,
    create_project,
    get_project,
    list_model_versions,
    list_projects,
    register_model_version,
    require_role,
    set_threshold,
)


def load_user(factory: sessionmaker[Session], user_id: int) -> User:
    with factory() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user


def register(session: Session, project_id: int, threshold: float | None = 1.0) -> ModelVersion:
    return register_model_version(
        session,
        project_id=project_id,
        kind="patchcore",
        artifact_path="models/cells/vN",
        metrics={"n_train": 3},
        threshold=threshold,
        training_snapshot={"images": []},
    )


@pytest.fixture
def users(session_factory: sessionmaker[Session], make_user: Callable[..., int]) -> dict[str, User]:
    return {
        role: load_user(session_factory, make_user(f"{role}-1", role))
        for role in ("inspector", "manager", "admin")
    }


def test_role_tuples_nest_except_user_management() -> None:
    assert set(CAN_MANAGE_MODELS) < set(CAN_REVIEW)
    assert CAN_MANAGE_USERS == ("admin",)
    assert issubclass(PermissionDenied, StorageError)
    assert db.PermissionDenied is PermissionDenied


def test_require_role_messages(users: dict[str, User]) -> None:
    require_role(users["manager"], *CAN_MANAGE_MODELS)
    require_role(users["admin"], CAN_MANAGE_MODELS)  # a tuple may be passed as is
    with pytest.raises(PermissionDenied, match="Only managers and admins can do this"):
        require_role(users["inspector"], *CAN_MANAGE_MODELS)
    with pytest.raises(PermissionDenied, match="Only managers can change thresholds"):
        require_role(
            users["inspector"], *CAN_MANAGE_MODELS, message="Only managers can change thresholds"
        )
    with pytest.raises(PermissionDenied, match="Only admins"):
        require_role(users["manager"], *CAN_MANAGE_USERS)
    with pytest.raises(PermissionDenied, match="Sign in"):
        require_role(None, *CAN_REVIEW)


def test_inactive_or_demoted_user_is_refused_from_the_database(
    session_factory: sessionmaker[Session], users: dict[str, User], project_id: int
) -> None:
    stale_manager = users["manager"]
    with session_factory() as session, session.begin():
        version = register(session, project_id)
        session.get(User, stale_manager.id).role = "inspector"  # demoted after the UI loaded it
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        activate_model_version(session, version_id=version.id, user=stale_manager)
    with session_factory() as session, session.begin():
        session.get(User, users["admin"].id).active = False
    with session_factory() as session, session.begin(), pytest.raises(PermissionDenied):
        set_threshold(session, version_id=version.id, threshold=2.0, user=users["admin"])


def test_create_list_and_get_projects(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, session.begin():
        project = create_project(
            session,
            name="  widgets ",
            object_name="widget",
            defect_types=["scratch", " Scratch", "", "dent"],
            target_fnr=0.02,
        )
        assert project.name == "widgets" and project.defect_types == ["scratch", "dent"]
        create_project(session, name="axles")
    with session_factory() as session:
        assert [p.name for p in list_projects(session)] == ["axles", "widgets"]
        assert get_project(session, "widgets").target_fnr == 0.02
        assert get_project(session, project.id).name == "widgets"
        assert get_project(session, "missing") is None
        with pytest.raises(ValueError, match="already exists"):
            create_project(session, name="widgets")
        with pytest.raises(ValueError, match="target miss rate"):
            create_project(session, name="other", target_fnr=1.5)


def test_inspectors_may_add_defect_types(
    session_factory: sessionmaker[Session], users: dict[str, User], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        types = add_defect_type(session, project_id, " chipped edge ", user=users["inspector"])
        assert types == ["crack", "dark", "chipped edge"]
        assert add_defect_type(session, project_id, "CRACK", user=users["inspector"]) == types
        with pytest.raises(ValueError, match="1 to 64"):
            add_defect_type(session, project_id, "  ", user=users["inspector"])
    with session_factory() as session:
        assert session.get(Project, project_id).defect_types == ["crack", "dark", "chipped edge"]


def test_versions_are_numbered_per_project(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        first, second = register(session, project_id), register(session, project_id)
        other = create_project(session, name="other")
        assert register(session, other.id).version == 1
    assert (first.version, second.version) == (1, 2)
    assert first.status == second.status == "candidate"
    with session_factory() as session:
        assert [v.version for v in list_model_versions(session, project_id)] == [2, 1]
        with pytest.raises(ValueError, match="already exists"):
            register_model_version(
                session,
                project_id=project_id,
                kind="patchcore",
                artifact_path="x",
                metrics={},
                threshold=None,
                training_snapshot={},
                version=2,
            )


def test_activation_retires_the_previous_version(
    session_factory: sessionmaker[Session], users: dict[str, User], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        first, second = register(session, project_id), register(session, project_id)
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=first.id, user=users["manager"])
    with session_factory() as session, session.begin():
        activate_model_version(session, version_id=second.id, user=users["admin"])
    with session_factory() as session:
        assert session.get(ModelVersion, first.id).status == "retired"
        active = session.get(ModelVersion, second.id)
        assert active.status == "active"
        assert session.get(Project, project_id).active_model_version_id == second.id
        assert [e["status"] for e in active.metrics["status_history"]] == ["active"]
        assert active.metrics["status_history"][0]["by"] == "admin-1"


def test_inspector_cannot_activate_or_change_thresholds(
    session_factory: sessionmaker[Session], users: dict[str, User], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        version = register(session, project_id, threshold=1.5)
    inspector = users["inspector"]
    with session_factory() as session, session.begin():
        with pytest.raises(PermissionDenied, match="Only managers can activate"):
            activate_model_version(session, version_id=version.id, user=inspector)
        with pytest.raises(PermissionDenied, match="Only managers can change thresholds"):
            set_threshold(session, version_id=version.id, threshold=0.1, user=inspector)
    with session_factory() as session:
        unchanged = session.get(ModelVersion, version.id)
        assert unchanged.status == "candidate" and unchanged.threshold == 1.5
        assert unchanged.metrics == {"n_train": 3}
        assert session.get(Project, project_id).active_model_version_id is None


def test_set_threshold_records_history(
    session_factory: sessionmaker[Session], users: dict[str, User], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        version = register(session, project_id, threshold=1.5)
    for new in (1.2, 0.9):
        with session_factory() as session, session.begin():
            set_threshold(session, version_id=version.id, threshold=new, user=users["manager"])
    with session_factory() as session:
        changed = session.get(ModelVersion, version.id)
        history = changed.metrics["threshold_history"]
        assert changed.threshold == 0.9 and changed.metrics["n_train"] == 3
        assert [(e["old"], e["new"], e["by"]) for e in history] == [
            (1.5, 1.2, "manager-1"),
            (1.2, 0.9, "manager-1"),
        ]
        assert history[0]["at"].endswith("+00:00")
        with pytest.raises(ValueError, match="finite"):
            set_threshold(
                session, version_id=version.id, threshold=float("nan"), user=users["manager"]
            )
        with pytest.raises(LookupError):
            set_threshold(session, version_id=9999, threshold=1.0, user=users["manager"])


def test_system_activation_needs_no_user(
    session_factory: sessionmaker[Session], project_id: int
) -> None:
    with session_factory() as session, session.begin():
        version = register(session, project_id)
        with pytest.raises(PermissionDenied):
            activate_model_version(session, version_id=version.id, user=None)
        activate_model_version(session, version_id=version.id, user=None, system=True)
    with session_factory() as session:
        assert session.get(Project, project_id).active_model_version_id == version.id
