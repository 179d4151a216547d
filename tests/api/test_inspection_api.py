"""The inspection API through FastAPI's TestClient: post, read back, keys, errors, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from active_model import fit_small_patchcore, project_with_active_model
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from api.app import create_app
from db import Prediction, Project, User
from db.api_keys import create_api_key
from db.models import StationInspection
from db.review_queue import record_review, review_queue

SCRATCH = png(make_part(900, defect=True))


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@pytest.fixture
def line(factory: sessionmaker[Session], tmp_path: Path, fitted: tuple) -> dict:
    """A project with an active model, and keys: inspect and read for it, inspect for another."""
    ids = {
        "project": project_with_active_model(factory, "widgets", fitted, tmp_path / "models"),
    }
    with factory() as session, session.begin():
        other = Project(name="other")
        session.add(other)
        session.flush()
        ids["other"] = other.id
    with factory() as session, session.begin():
        for name, project, scope in (
            ("inspect", ids["project"], "inspect"),
            ("read", ids["project"], "read"),
            ("foreign", ids["other"], "inspect"),
        ):
            ids[name] = create_api_key(
                session,
                project_id=project,
                station=f"station-{name}",
                scope=scope,
                user=None,
                system=True,
            ).key
    return ids


@pytest.fixture
def client(factory: sessionmaker[Session]) -> TestClient:
    return TestClient(create_app(factory, runtime="torch"))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_posted_part_is_scored_stored_queued_and_read_back(
    client: TestClient, line: dict, factory: sessionmaker[Session]
) -> None:
    taken = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    captured = taken.isoformat().replace("+00:00", "Z")
    posted = client.post(
        f"/api/v1/projects/widgets/inspections?part_id=P-1&captured_at={captured}",
        content=SCRATCH,
        headers={**auth(line["inspect"]), "Content-Type": "image/png"},
    )
    assert posted.status_code == 201, posted.text
    body = posted.json()
    assert body["verdict"] == "defect" and body["score"] >= body["threshold"]
    assert (body["station"], body["part_id"], body["model_version"], body["model_label"]) == (
        "station-inspect",
        "P-1",
        1,
        "v1.0",
    )
    assert body["explanation"] and body["review"] is None and not body["duplicate"]
    assert datetime.fromisoformat(body["captured_at"]) == taken

    read = client.get(
        f"/api/v1/projects/widgets/inspections/{body['id']}", headers=auth(line["read"])
    )
    assert read.status_code == 200 and read.json()["score"] == body["score"]
    image = client.get(body["image_url"], headers=auth(line["read"]))
    assert image.status_code == 200 and image.content == SCRATCH
    overlay = client.get(body["map_url"], headers=auth(line["read"]))
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")

    with factory() as session:  # the same queue as a browser upload
        queued = [item.image_id for item in review_queue(session, line["project"])]
        image_id = session.get(StationInspection, body["id"]).image_id
    assert image_id in queued
    with factory() as session, session.begin():
        inspector = User(name="ines", role="inspector", password_hash="x")
        session.add(inspector)
        session.flush()
        record_review(session, image_id=image_id, user=inspector, label="good")
    review = client.get(
        f"/api/v1/projects/widgets/inspections/{body['id']}", headers=auth(line["read"])
    ).json()["review"]
    assert (review["label"], review["reviewer"]) == ("good", "ines")  # the MES reads the decision


def test_the_same_part_id_or_the_same_bytes_return_the_first_result(
    client: TestClient, line: dict, factory: sessionmaker[Session]
) -> None:
    url = "/api/v1/projects/widgets/inspections"
    first = client.post(f"{url}?part_id=P-7", content=SCRATCH, headers=auth(line["inspect"]))
    again = client.post(f"{url}?part_id=P-7", content=SCRATCH, headers=auth(line["inspect"]))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"]
    predictions = count(factory, Prediction)
    no_id = client.post(url, content=png(make_part(901)), headers=auth(line["inspect"]))
    retry = client.post(url, content=png(make_part(901)), headers=auth(line["inspect"]))
    assert (no_id.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == no_id.json()["id"]
    assert count(factory, Prediction) == predictions + 1  # the retry stored nothing


def test_multipart_posts_work_like_raw_bodies(client: TestClient, line: dict) -> None:
    posted = client.post(
        "/api/v1/projects/widgets/inspections",
        files={"file": ("part.png", png(make_part(902)), "image/png")},
        headers={"X-API-Key": line["inspect"]},
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["verdict"] in ("good", "defect")


@pytest.mark.parametrize(
    ("key", "project", "status", "code"),
    [
        (None, "widgets", 401, "unauthenticated"),
        ("loupe_AAAAAAAAAAAA_" + "x" * 43, "widgets", 401, "unauthenticated"),
        ("read", "widgets", 403, "forbidden"),
        ("foreign", "widgets", 404, "not_found"),
    ],
)
def test_keys_are_checked_and_errors_have_one_json_shape(
    client: TestClient,
    line: dict,
    factory: sessionmaker[Session],
    key: str | None,
    project: str,
    status: int,
    code: str,
) -> None:
    headers = auth(line.get(key, key)) if key else {}
    refused = client.post(
        f"/api/v1/projects/{project}/inspections", content=SCRATCH, headers=headers
    )
    assert refused.status_code == status
    assert refused.json()["error"]["code"] == code and refused.json()["error"]["message"]
    assert count(factory, StationInspection) == 0
    if key and key.startswith("loupe_"):
        assert key not in refused.text


def test_a_file_that_is_not_an_image_is_refused_with_a_reason_and_stores_nothing(
    client: TestClient, line: dict, factory: sessionmaker[Session]
) -> None:
    refused = client.post(
        "/api/v1/projects/widgets/inspections",
        content=b"not an image",
        headers=auth(line["inspect"]),
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("The image was refused")
    empty = client.post("/api/v1/projects/widgets/inspections", headers=auth(line["inspect"]))
    assert empty.status_code == 422 and "no image" in empty.json()["error"]["message"]
    assert count(factory, StationInspection) == 0 and count(factory, Prediction) == 0


def test_an_oversized_body_is_refused_with_413_and_stores_nothing(
    client: TestClient, line: dict, factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.app

    monkeypatch.setattr(api.app, "MAX_BYTES", 100_000)
    url = "/api/v1/projects/widgets/inspections"
    big = png(make_part(801, size=512)) + bytes(200_000)  # declared over the limit
    refused = client.post(url, content=big, headers=auth(line["inspect"]))
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
    assert "larger than" in refused.json()["error"]["message"]

    def chunked():  # no Content-Length: the body is cut off while it is read
        for _ in range(30):
            yield bytes(10_000)

    streamed = client.post(url, content=chunked(), headers=auth(line["inspect"]))
    assert streamed.status_code == 413
    multipart = client.post(
        url, files={"file": ("big.png", big, "image/png")}, headers=auth(line["inspect"])
    )
    assert multipart.status_code == 413
    fine = client.post(url, content=png(make_part(802)), headers=auth(line["inspect"]))
    assert fine.status_code == 201
    assert count(factory, StationInspection) == 1 and count(factory, Prediction) == 1


def test_the_list_pages_and_filters_by_verdict_and_time(client: TestClient, line: dict) -> None:
    url = "/api/v1/projects/widgets/inspections"
    for seed in range(3):
        client.post(
            f"{url}?part_id=G-{seed}",
            content=png(make_part(910 + seed)),
            headers=auth(line["inspect"]),
        )
    client.post(f"{url}?part_id=D-1", content=SCRATCH, headers=auth(line["inspect"]))
    listed = client.get(f"{url}?limit=2", headers=auth(line["read"])).json()
    assert len(listed["items"]) == 2 and listed["next_offset"] == 2
    rest = client.get(f"{url}?limit=2&offset=2", headers=auth(line["read"])).json()
    assert len(rest["items"]) == 2 and rest["next_offset"] is None
    defects = client.get(f"{url}?verdict=defect", headers=auth(line["read"])).json()["items"]
    assert "D-1" in [item["part_id"] for item in defects]
    assert all(item["verdict"] == "defect" for item in defects)
    future = client.get(f"{url}?since=2999-01-01T00:00:00Z", headers=auth(line["read"]))
    assert future.json()["items"] == []
    naive = client.get(f"{url}?since=2026-01-01T00:00:00", headers=auth(line["read"]))
    assert naive.status_code == 422 and naive.json()["error"]["code"] == "invalid"
    bad = client.get(f"{url}?verdict=maybe", headers=auth(line["read"]))
    assert bad.status_code == 422 and "verdict" in bad.json()["error"]["message"]


def test_the_openapi_description_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/projects/{project}/inspections" in paths
    assert "/api/v1/projects/{project}/inspections/{inspection_id}" in paths
    assert client.get("/docs").status_code == 200
