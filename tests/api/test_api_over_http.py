"""The inspection API served by a real uvicorn on a loopback port (bounded in time)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from active_model import fit_small_patchcore, project_with_active_model
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png
from webhook_receiver import Receiver, receiving

from api.app import create_app
from db.api_keys import create_api_key
from db.outbound_messages import OUTBOUND_KEY, OutboundConfig, WebhookConfig
from services.project_settings import store_option


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
    with factory() as session, session.begin():
        webhook = WebhookConfig(True, receiver.url)
        store_option(session, project_id, OUTBOUND_KEY, OutboundConfig(webhook=webhook).to_json())
    with factory() as session, session.begin():
        key = create_api_key(
            session,
            project_id=project_id,
            station="line-1",
            scope="inspect",
            user=None,
            system=True,
        ).key
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(factory, runtime="torch"), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
        assert body["verdict"] == "defect" and body["image_url"].startswith(base)
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
