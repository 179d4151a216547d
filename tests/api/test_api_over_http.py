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

from api.app import create_app
from db.api_keys import create_api_key


@pytest.fixture
def served(factory: sessionmaker[Session], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(base URL, inspect key)`` of the API on a free loopback port, stopped afterwards."""
    project_id = project_with_active_model(
        factory, "widgets", fit_small_patchcore(), tmp_path / "models"
    )
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
