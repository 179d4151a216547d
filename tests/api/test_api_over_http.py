"""The inspection API served by a real uvicorn on a loopback port (bounded in time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from active_model import (
    fit_small_patchcore,
    project_with_active_model,
    send_verdicts_to,
    station_key,
)
from served_api import serving
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png
from webhook_receiver import Receiver, receiving

from api.app import create_app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port."""
    with receiving() as state:
        yield state


@pytest.fixture
def served(
    factory: sessionmaker[Session], tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[str, str]]:
    """``(base URL, inspect key)`` of the API on a free loopback port, stopped afterwards.

    The project's verdicts go to ``receiver`` (its webhook).
    """
    project_id = project_with_active_model(
        factory, "widgets", fit_small_patchcore(), tmp_path / "models"
    )
    send_verdicts_to(factory, project_id, receiver.url)
    key = station_key(factory, project_id).key
    with serving(create_app(factory, runtime="torch")) as base:
        yield base, key


def test_a_station_posts_over_http_and_reads_the_verdict_back(served: tuple[str, str]) -> None:
    base, key = served
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        posted = client.post(
            "/api/v1/projects/widgets/inspections?part_id=A-1",
            content=png(make_part(700, defect=True)),
            headers={**headers, "Content-Type": "image/png"},
        )
        assert posted.status_code == 201, posted.text
        body = posted.json()
        assert body["verdict"] == "defect" and body["image_url"].startswith("/api/v1/")
        again = client.get(body["image_url"], headers=headers)
        assert again.status_code == 200 and again.headers["content-type"] == "image/png"
        refused = client.post("/api/v1/projects/widgets/inspections", content=b"x")
        assert refused.status_code == 401
        assert refused.json() == {
            "error": {"code": "unauthenticated", "message": "Missing or malformed API key."}
        }


def test_the_served_api_sends_each_verdict_to_the_webhook_with_the_part_id(
    served: tuple[str, str], receiver: Receiver
) -> None:
    base, key = served
    with httpx.Client(base_url=base, timeout=30) as client:
        posted = client.post(
            "/api/v1/projects/widgets/inspections?part_id=B-7",
            content=png(make_part(701)),
            headers={"X-API-Key": key, "Content-Type": "image/png"},
        )
        assert posted.status_code == 201, posted.text
        again = client.post(
            "/api/v1/projects/widgets/inspections?part_id=B-7",
            content=png(make_part(701)),
            headers={"X-API-Key": key, "Content-Type": "image/png"},
        )
        assert again.status_code == 200  # the same part: no second verdict goes out
    (message,) = receiver.wait_for(1, timeout=15)
    assert (message["event"], message["station"], message["part_id"]) == (
        "verdict",
        "line-1",
        "B-7",
    )
    assert message["inspection_id"] == posted.json()["id"]
    assert message["verdict"] == posted.json()["verdict"]
    time.sleep(1.5)  # a poll later, still one message
    assert len(receiver.posts) == 1
