"""The inspection API's routes: post a part, read one inspection, list them, fetch images.

Every call carries a station API key (``Authorization: Bearer <key>`` or ``X-API-Key``;
:mod:`db.api_keys`): a missing or bad key is a 401, a key without the scope a 403, a key of
another project a 404 (the project is not shown to it). Errors are JSON of one shape,
``{"error": {"code": ..., "message": ...}}``. Keys never reach a log: the access log of
uvicorn prints the path, and no route puts the key in it.

No ``from __future__ import annotations`` here: FastAPI reads the routes' ``Annotated``
dependencies, which name functions local to :func:`create_app`, when the routes are defined.
"""

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

import db
from adcore.errors import LoupeError
from api.schemas import InspectionList, InspectionOut, inspection_out
from db.api_keys import authenticate
from db.permissions import PermissionDenied
from db.projects import find_project
from db.station_inspections import StationRecord, get_post, list_posts
from services.station_inspection import (
    NoActiveModel,
    Station,
    inspect_station_part,
    map_overlay_png,
)
from workers.outbound_delivery import OutboundDelivery

API_PREFIX = "/api/v1/projects/{project}"
MAX_BYTES = 50 * 1024 * 1024
"""Largest image accepted per post (a 413 beyond)."""


def create_app(
    session_factory: sessionmaker[Session] | None = None,
    *,
    data_dir: Path | None = None,
    runtime: str | None = None,
    deliver: bool = True,
    warm_up: bool = True,
) -> FastAPI:
    """The API application.

    While it is served, a delivery worker (:class:`workers.outbound_delivery.OutboundDelivery`)
    sends the outbox: the verdicts of this and every other process, and the inspectors' labels
    from the workbench. Several API processes on one database share the outbox safely.

    Args:
        session_factory: The store; default :func:`db.init_db` on ``$LOUPE_DATABASE_URL``.
        data_dir: The data directory; default :func:`db.data_dir`.
        runtime: Scoring runtime (``torch`` or ``onnx``); default ``$LOUPE_RUNTIME``.
        deliver: Run the delivery worker while the app is served (off: ``loupe deliver`` or
            another process sends the outbox).
        warm_up: Load the projects' active models before the first request is taken
            (:func:`services.scoring_runtime.warm_up_active_models`).
    """
    from services.scoring_runtime import (
        configured_runtime,
        detector_loader,
        warm_up_active_models,
    )

    factory = session_factory or db.make_session_factory(db.init_db())
    runtime = runtime or configured_runtime()
    scoring = threading.Lock()  # one part scored at a time: the model uses every core

    detector_for = detector_loader(runtime)
    delivery = OutboundDelivery(factory) if deliver else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(warm_up_active_models, factory, detector_for)
        if delivery is not None:
            delivery.start()
        try:
            yield
        finally:
            if delivery is not None:
                delivery.stop()

    app = FastAPI(
        title="Loupe inspection API",
        version="1",
        description="Camera stations post parts; the line and its MES read verdicts back.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    def session() -> Iterator[Session]:
        with factory() as opened:
            yield opened

    def station_key(
        project: str,
        scope: str,
        authorization: str | None,
        x_api_key: str | None,
        session: Session,
    ) -> Station:
        presented = x_api_key
        if presented is None and authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        try:
            key = authenticate(session, presented, scope=scope)
        except PermissionError as err:
            raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from err
        except PermissionDenied as err:
            raise HTTPException(403, str(err)) from err
        project_row = find_project(session, project)
        if project_row is None or project_row.id != key.project_id:
            raise HTTPException(404, f"No project {project!r} for this key.")
        session.commit()  # the key's last use
        return Station(key.id, key.project_id, key.station)

    def key_with(scope: str) -> Callable[..., Station]:
        """The dependency that admits keys allowing ``scope``."""

        def station_of(
            project: str,
            session: Annotated[Session, Depends(session)],
            authorization: Annotated[str | None, Header()] = None,
            x_api_key: Annotated[str | None, Header()] = None,
        ) -> Station:
            return station_key(project, scope, authorization, x_api_key, session)

        return station_of

    reader, inspector = key_with("read"), key_with("inspect")

    def links(request: Request, record: StationRecord) -> dict[str, str | None]:
        base = str(request.base_url).rstrip("/")
        here = f"{base}/api/v1/projects/{record.project_id}/inspections/{record.id}"
        return {
            "image_url": f"{here}/image",
            "map_url": f"{here}/map" if record.anomaly_map_path else None,
        }

    @app.get("/", name="root", include_in_schema=False)
    def root() -> dict[str, str]:
        return {"service": "Loupe inspection API", "docs": "/docs"}

    @app.post(
        f"{API_PREFIX}/inspections",
        response_model=InspectionOut,
        status_code=201,
        responses={200: {"model": InspectionOut, "description": "An earlier post of the part"}},
    )
    async def post_inspection(
        request: Request,
        station: Annotated[Station, Depends(inspector)],
        part_id: Annotated[str | None, Query(max_length=128)] = None,
        captured_at: Annotated[datetime | None, Query()] = None,
    ) -> Response:
        """Score one part: multipart (field ``file``) or the raw image as the body."""
        data, filename = await _image_of(request)
        if captured_at is not None and captured_at.utcoffset() is None:
            raise HTTPException(422, "captured_at needs a time zone, e.g. 2026-12-02T08:00:00Z.")

        def work() -> Any:
            with scoring:
                return inspect_station_part(
                    factory,
                    station,
                    data,
                    filename=filename or f"{station.name}-{part_id or 'part'}.png",
                    part_id=part_id,
                    captured_at=captured_at,
                    detector_for=detector_for,
                    data_dir=data_dir,
                )

        from starlette.concurrency import run_in_threadpool

        try:
            posted = await run_in_threadpool(work)
        except NoActiveModel as err:
            raise HTTPException(409, str(err)) from err
        if posted.record is None:
            raise HTTPException(422, f"The image was refused: {posted.error}")
        if delivery is not None and not posted.duplicate:
            delivery.wake()  # its verdict goes out now, not at the next poll
        body = inspection_out(
            posted.record, duplicate=posted.duplicate, **links(request, posted.record)
        )
        return JSONResponse(
            body.model_dump(mode="json"), status_code=200 if posted.duplicate else 201
        )

    @app.get(f"{API_PREFIX}/inspections/{{inspection_id}}", response_model=InspectionOut)
    def get_inspection(
        request: Request,
        inspection_id: int,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
    ) -> InspectionOut:
        """One inspection, with the part's current human label once reviewed."""
        record = _found(get_post(session, station.project_id, inspection_id), inspection_id)
        return inspection_out(record, **links(request, record))

    @app.get(f"{API_PREFIX}/inspections", response_model=InspectionList)
    def list_inspections(
        request: Request,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
        since: datetime | None = None,
        until: datetime | None = None,
        verdict: Annotated[str | None, Query(pattern="^(good|defect)$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> InspectionList:
        """The project's inspections in ``[since, until)``, oldest first, a page at a time."""
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.utcoffset() is None:
                raise HTTPException(422, f"{name} needs a time zone, e.g. 2026-12-02T08:00:00Z.")
        records = list_posts(
            session,
            station.project_id,
            since=since,
            until=until,
            verdict=verdict,
            limit=limit + 1,
            offset=offset,
        )
        page = [inspection_out(r, **links(request, r)) for r in records[:limit]]
        return InspectionList(
            items=page, next_offset=offset + limit if len(records) > limit else None
        )

    @app.get(f"{API_PREFIX}/inspections/{{inspection_id}}/image")
    def inspection_image(
        inspection_id: int,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
    ) -> FileResponse:
        """The stored image file of the inspected part."""
        record = _found(get_post(session, station.project_id, inspection_id), inspection_id)
        path = db.absolute_image_path(record.stored_path, data_dir)
        if not path.exists():
            raise HTTPException(410, "The image file is no longer stored.")
        return FileResponse(path)

    @app.get(f"{API_PREFIX}/inspections/{{inspection_id}}/map")
    def inspection_map(
        inspection_id: int,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
    ) -> Response:
        """The part with its anomaly map over it (PNG, on its model version's colour scale)."""
        record = _found(get_post(session, station.project_id, inspection_id), inspection_id)
        try:
            png = map_overlay_png(session, record, data_dir)
        except (OSError, ValueError, LoupeError) as err:
            raise HTTPException(410, f"The anomaly map cannot be drawn: {err}") from err
        return Response(png, media_type="image/png")

    return app


def _found(record: StationRecord | None, inspection_id: int) -> StationRecord:
    if record is None:
        raise HTTPException(404, f"No inspection {inspection_id} in this project.")
    return record


async def _image_of(request: Request) -> tuple[bytes, str | None]:
    """The posted image: the multipart field ``file``, or the raw body.

    A body announced (``Content-Length``) or found to be over :data:`MAX_BYTES` is refused with
    a 413 before it is read whole: a raw body is read in chunks and dropped past the limit.
    """
    too_large = HTTPException(
        413, f"The image is larger than {MAX_BYTES // (1024 * 1024)} MB: send a smaller file."
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BYTES + 64 * 1024:  # multipart adds headers
        raise too_large
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile | StarletteUploadFile):
            raise HTTPException(422, "Send the image in a multipart field named 'file'.")
        data = await upload.read(MAX_BYTES + 1)
        filename = upload.filename
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BYTES:
                raise too_large
            chunks.append(chunk)
        data = b"".join(chunks)
        filename = None
    if not data:
        raise HTTPException(422, "The request carries no image.")
    if len(data) > MAX_BYTES:
        raise too_large
    return data, filename


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"code", "message"}}`` (validation errors list the fields)."""
    codes = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        410: "gone",
        413: "too_large",
        422: "invalid",
    }

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        body = {"error": {"code": codes.get(err.status_code, "error"), "message": err.detail}}
        return JSONResponse(body, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(part) for part in e["loc"]), "problem": e["msg"]}
            for e in err.errors()
        ]
        message = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        body = {"error": {"code": "invalid", "message": message, "fields": fields}}
        return JSONResponse(body, status_code=422)
