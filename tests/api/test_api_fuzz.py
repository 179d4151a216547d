"""Fuzzing the inspection API from its own OpenAPI description (schemathesis, over real HTTP).

Schemathesis generates valid and invalid requests for every operation (path, query, headers,
bodies) and sends them, with a valid station key, to a real uvicorn on a loopback port. Every
answer must be documented, below 500, an error in the JSON shape, and a refused post must
store nothing. Bounded: a fixed number of examples per operation, well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from active_model import fit_small_patchcore, project_with_active_model, station_key
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from served_api import serving
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from synthetic_parts import make_part, png

from api.app import create_app
from db import Image, Prediction
from db.models import StationInspection

EXAMPLES_PER_OPERATION = 60
STORED = (Image, Prediction, StationInspection)


@pytest.fixture(scope="module")
def fitted() -> tuple:
    return fit_small_patchcore()


@pytest.fixture
def station(factory: sessionmaker[Session], tmp_path: Path, fitted: tuple) -> dict:
    """A project with an active model, one stored post, and an inspect key of its station."""
    project_id = project_with_active_model(factory, "widgets", fitted, tmp_path / "models")
    key = station_key(factory, project_id).key
    return {"headers": {"Authorization": f"Bearer {key}"}}


@pytest.fixture
def served_api(factory: sessionmaker[Session], station: dict) -> Iterator[str]:
    app = create_app(factory, runtime="torch", deliver=False, warm_up=False)
    with serving(app) as base:
        import httpx

        seeded = httpx.post(
            f"{base}/api/v1/projects/widgets/inspections?part_id=SEED",
            content=png(make_part(1)),
            headers=station["headers"],
            timeout=60,
        )
        assert seeded.status_code == 201, seeded.text
        yield base


def stored(factory: sessionmaker[Session]) -> tuple[int, ...]:
    with factory() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in STORED)


def test_no_request_makes_the_api_fail_or_store_half(
    served_api: str, station: dict, factory: sessionmaker[Session]
) -> None:
    """Valid and invalid requests for every operation of the API's own OpenAPI description."""
    schema = schemathesis.openapi.from_url(f"{served_api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5  # post, list, one, image, map

    def check(case: schemathesis.Case) -> None:
        # Mostly the station's own project (else nearly every request ends at the key's 404)
        # and always its valid key (keys are tested elsewhere): the fuzz reaches the routes.
        project = str(case.path_parameters.get("project", ""))
        if len(project) % 4:
            case.path_parameters["project"] = "widgets"
        for name in list(case.headers or {}):
            if name.lower() in {"authorization", "x-api-key"}:
                del case.headers[name]
        before = stored(factory)
        response = case.call(base_url=served_api, headers=station["headers"], timeout=60)
        where = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}"
        assert response.status_code < 500, (where, response.text[:500])
        if response.status_code >= 400:
            assert response.text.startswith("{"), (where, response.text[:300])
            error = response.json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str), where
            if case.method == "POST":
                assert stored(factory) == before, f"a refused post stored something: {where}"
        # An image the schema allows may still be refused (a 1x1 PNG): not a schema violation.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = settings(
                deadline=None,
                max_examples=EXAMPLES_PER_OPERATION,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )(given(case=operation.as_strategy(generation_mode=mode))(check))
            run()
