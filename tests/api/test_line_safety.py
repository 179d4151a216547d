"""The line cannot be fooled: idempotent posts, all or nothing, 4xx for bad requests (over HTTP).

Each test serves the API with a real uvicorn on a loopback port. Tests about what is stored
run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from active_model import (
    fit_small_patchcore,
    project_with_active_model,
    send_verdicts_to,
    station_key,
)
from PIL import Image as PILImage
from served_api import serving
from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from api.app import MAX_BYTES, create_app
from db import Image, Prediction
from db.models import StationInspection
from db.models.outbound_messages import OutboundMessage

BACKENDS = pytest.mark.parametrize("database_backend", ["sqlite", "postgresql"], indirect=True)
URL = "/api/v1/projects/widgets/inspections"
STORED = (Image, Prediction, StationInspection, OutboundMessage)


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@pytest.fixture
def line(factory: sessionmaker[Session], tmp_path: Path, fitted: tuple) -> dict:
    """A project with an active model, a webhook (never reached: nothing delivers) and a key."""
    project_id = project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    send_verdicts_to(factory, project_id, "http://127.0.0.1:9/hook")
    key = station_key(factory, project_id).key
    return {"project": project_id, "headers": {"Authorization": f"Bearer {key}"}}


@pytest.fixture
def api(factory: sessionmaker[Session], line: dict) -> Iterator[httpx.Client]:
    """A client of the API served on a loopback port (the outbox is not delivered)."""
    with (
        serving(create_app(factory, runtime="torch", deliver=False, warm_up=False)) as base,
        httpx.Client(base_url=base, timeout=60, headers=line["headers"]) as client,
    ):
        yield client


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    """How many images, predictions, posts and outbox messages are stored."""
    with factory() as session:
        return {
            model.__tablename__: session.scalar(sql_select(func.count()).select_from(model))
            for model in STORED
        }


def is_error(response: httpx.Response, status: int) -> bool:
    """Whether ``response`` is ``status`` with the API's JSON error shape."""
    body = response.json()
    return (
        response.status_code == status
        and set(body) == {"error"}
        and isinstance(body["error"]["code"], str)
        and isinstance(body["error"]["message"], str)
    )


@BACKENDS
def test_an_empty_part_id_is_refused_and_stores_nothing(
    api: httpx.Client, factory: sessionmaker[Session]
) -> None:
    first = api.post(f"{URL}?part_id=", content=png(make_part(1)))
    assert is_error(first, 422) and "part_id" in first.json()["error"]["message"]
    blank = api.post(f"{URL}?part_id=%20%20", content=png(make_part(2)))
    assert is_error(blank, 422)
    assert counts(factory) == dict.fromkeys(counts(factory), 0)


def test_a_part_id_is_trimmed_so_a_repeat_with_spaces_is_the_same_part(
    api: httpx.Client,
) -> None:
    first = api.post(f"{URL}?part_id=P-1", content=png(make_part(3)))
    again = api.post(f"{URL}?part_id=%20P-1%20", content=png(make_part(3)))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["part_id"] == "P-1"


@BACKENDS
def test_the_same_part_id_with_another_image_is_a_409_naming_the_first_and_stores_nothing(
    api: httpx.Client, factory: sessionmaker[Session]
) -> None:
    first = api.post(f"{URL}?part_id=P-2", content=png(make_part(4)))
    assert first.status_code == 201, first.text
    before = counts(factory)
    other = api.post(f"{URL}?part_id=P-2", content=png(make_part(5, defect=True)))
    assert is_error(other, 409)
    assert f"inspection {first.json()['id']}" in other.json()["error"]["message"]
    assert counts(factory) == before
    listed = api.get(URL).json()["items"]
    assert [item["verdict"] for item in listed] == [first.json()["verdict"]]


@BACKENDS
def test_an_implausible_capture_time_is_refused_before_anything_is_stored(
    api: httpx.Client, factory: sessionmaker[Session]
) -> None:
    for captured_at in (
        "9999-12-31T23:59:59-14:00",  # overflows UTC: was a 500 after storing the part
        "99999999999999",  # a Unix time in the year 5138
        (datetime.now(UTC) - timedelta(days=400)).isoformat(),
        (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "2026-12-02T08:00:00",  # no time zone
    ):
        refused = api.post(
            URL, params={"part_id": "OVF-1", "captured_at": captured_at}, content=png(make_part(6))
        )
        assert is_error(refused, 422), (captured_at, refused.text)
        assert "captured_at" in refused.json()["error"]["message"]
    assert counts(factory) == dict.fromkeys(counts(factory), 0)
    now = datetime.now(UTC).isoformat()
    taken = api.post(
        URL, params={"part_id": "OVF-1", "captured_at": now}, content=png(make_part(6))
    )
    assert taken.status_code == 201, taken.text


@BACKENDS
def test_parallel_posts_of_one_part_to_two_servers_store_one_of_everything(
    factory: sessionmaker[Session], line: dict
) -> None:
    """Two API processes (here: two served apps, each with its own scoring lock) race."""
    rounds = 5
    with (
        serving(create_app(factory, runtime="torch", deliver=False, warm_up=False)) as one,
        serving(create_app(factory, runtime="torch", deliver=False, warm_up=False)) as two,
        ThreadPoolExecutor(2) as pool,
    ):

        def post(base: str, part: int | None) -> httpx.Response:
            query = "" if part is None else f"?part_id=RACE-{part}"  # None: the same bytes
            return httpx.post(
                f"{base}{URL}{query}",
                content=png(make_part(99 if part is None else 10 + part)),
                headers=line["headers"],
                timeout=60,
            )

        for part in range(rounds):
            answers = list(pool.map(post, (one, two), (part, part)))
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200, 201], [answer.text for answer in answers]
            assert answers[0].json()["id"] == answers[1].json()["id"]
        no_id = list(pool.map(post, (one, two), (None, None)))
        assert sorted(answer.status_code for answer in no_id) == [200, 201]
    assert counts(factory) == dict.fromkeys(counts(factory), rounds + 1)


def test_numbers_and_dates_out_of_range_are_4xx_in_the_json_shape(api: httpx.Client) -> None:
    posted = api.post(f"{URL}?part_id=R-1", content=png(make_part(7))).json()
    for path, params in (
        (URL, {"offset": 10**20}),
        (URL, {"limit": 0}),
        (URL, {"since": "9999-12-31T23:59:59-14:00"}),
        (URL, {"until": "0001-01-01T00:00:00+14:00"}),
        (URL, {"since": "2026-12-02T08:00:00"}),  # no zone
        (URL, {"verdict": "maybe"}),
        (f"{URL}/{2**63}", {}),
        (f"{URL}/{2**63}/image", {}),
        (f"{URL}/{2**31}/map", {}),
        (f"{URL}/0", {}),
    ):
        answer = api.get(path, params=params)
        assert is_error(answer, 422), (path, params, answer.status_code, answer.text)
    assert api.get(f"{URL}/{posted['id']}").status_code == 200


def test_unknown_parameters_two_files_and_other_fields_are_refused(
    api: httpx.Client, factory: sessionmaker[Session]
) -> None:
    image = png(make_part(8))
    typo = api.post(f"{URL}?partid=T-1", content=image)  # was a part without id
    assert is_error(typo, 422) and "partid" in typo.json()["error"]["message"]
    assert is_error(api.get(f"{URL}?verdit=good"), 422)  # was an unfiltered list
    twice = api.post(f"{URL}?part_id=A&part_id=B", content=image)  # was part B
    assert is_error(twice, 422) and "more than once" in twice.json()["error"]["message"]
    two = api.post(URL, files=[("file", ("a.png", image)), ("file", ("b.png", png(make_part(9))))])
    assert is_error(two, 422) and "one image" in two.json()["error"]["message"]
    other = api.post(URL, files={"file": ("a.png", image)}, data={"note": "x"})
    assert is_error(other, 422) and "note" in other.json()["error"]["message"]
    json_body = api.post(URL, json={"image": "x"})
    assert is_error(json_body, 415)
    assert is_error(api.post(URL, content=b"a note", headers={"Content-Type": "text/plain"}), 415)
    assert counts(factory) == dict.fromkeys(counts(factory), 0)
    one = api.post(URL, files={"file": ("a.png", image)})
    assert one.status_code == 201, one.text
    # curl --data-binary @part.png declares a form body: its bytes are the image, as before.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    curl_default = api.post(URL, content=png(make_part(23)), headers=form)
    assert curl_default.status_code == 201, curl_default.text


def test_links_are_never_built_from_the_host_header(
    factory: sessionmaker[Session], line: dict
) -> None:
    spoofed = {**line["headers"], "Host": "evil.example"}
    with serving(create_app(factory, runtime="torch", deliver=False, warm_up=False)) as base:
        body = httpx.post(f"{base}{URL}", content=png(make_part(20)), headers=spoofed).json()
        assert body["image_url"].startswith("/api/v1/projects/") and "evil" not in str(body)
    public = "https://loupe.plant.example/"
    app = create_app(factory, runtime="torch", deliver=False, warm_up=False, public_url=public)
    with serving(app) as base:
        body = httpx.post(f"{base}{URL}", content=png(make_part(21)), headers=spoofed).json()
    assert urlsplit(body["image_url"]).netloc == "loupe.plant.example"
    assert body["map_url"].startswith("https://loupe.plant.example/api/v1/projects/")


def test_an_image_the_browser_cannot_show_is_refused_and_a_stored_one_keeps_its_type(
    api: httpx.Client, factory: sessionmaker[Session], tmp_path: Path
) -> None:
    pixels = make_part(22)
    ppm = tmp_path / "part.ppm"
    PILImage.fromarray(pixels).save(ppm)
    refused = api.post(URL, content=ppm.read_bytes())
    assert is_error(refused, 422)
    assert counts(factory) == dict.fromkeys(counts(factory), 0)
    jpeg = tmp_path / "part.jpg"
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(jpeg)
    posted = api.post(URL, content=jpeg.read_bytes()).json()
    image = api.get(posted["image_url"])
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-content-type-options"] == "nosniff"


def test_an_endless_chunked_upload_is_cut_at_the_cap_while_it_streams(
    api: httpx.Client, line: dict, factory: sessionmaker[Session]
) -> None:
    """180 MB of chunked multipart: the 413 comes once the cap is passed, not after spooling."""
    host, port = urlsplit(str(api.base_url)).netloc.split(":")
    total, chunk = 180 * 1024 * 1024, b"\0" * (1024 * 1024)
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: {line['headers']['Authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part_head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    sent, answer = 0, b""
    with socket.create_connection((host, int(port)), timeout=60) as raw:
        raw.sendall(head + f"{len(part_head):x}\r\n".encode() + part_head + b"\r\n")
        while sent < total:
            readable, _, _ = select.select([raw], [], [], 0)
            if readable:
                answer = raw.recv(65536)
                break
            try:
                raw.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        if not answer:
            raw.settimeout(30)
            answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < MAX_BYTES + 20 * len(chunk)  # socket buffers, not the whole body
    assert counts(factory) == dict.fromkeys(counts(factory), 0)


def test_every_answer_forbids_sniffing_and_framing(api: httpx.Client) -> None:
    for answer in (api.get(URL), api.get(f"{URL}/1"), api.post(URL, content=b"not an image")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
