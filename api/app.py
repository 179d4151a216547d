"""The inspection API's routes: post a part, read one inspection, list them, fetch images.

Every call carries a station API key (``Authorization: Bearer <key>`` or ``X-API-Key``;
:mod:`db.api_keys`): a missing or bad key is a 401, a key without the scope a 403, a key of
another project a 404 (the project is not shown to it). Errors are JSON of one shape,
``{"error": {"code": ..., "message": ...}}``, 4xx for every bad request (a 500 is a bug).
Keys never reach a log: the access log of uvicorn prints the path, and no route puts the key
in it.

What the line can rely on:

* A post is idempotent by the station's part id (:mod:`services.station_inspection`): the
  same id and bytes return the first result (200), other bytes are a 409 naming the first
  inspection, and nothing is stored; image, prediction, post and outbox commit together.
* Parameters are checked before anything is read or scored (:mod:`api.query_models`):
  unknown ones, empty part ids, implausible capture times and out-of-range numbers are 422s.
* Bodies are bounded (:mod:`api.request_limits`): announced or streamed past the cap, a 413
  before the body is read whole or spooled; a multipart post carries exactly one ``file``.
* Links in answers start with ``$LOUPE_API_PUBLIC_URL`` or are relative, never built from
  the ``Host`` header; every answer carries ``nosniff``, ``X-Frame-Options: DENY`` and a
  content security policy (:mod:`api.security_headers`).

No ``from __future__ import annotations`` here: FastAPI reads the routes' ``Annotated``
dependencies, which name functions local to :func:`create_app`, when the routes are defined.
"""

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

import db
from adcore.errors import LoupeError
from adcore.image_io import MAX_FILE_BYTES
from api.query_models import (
    MAX_ROW_ID,
    InspectionFilter,
    PostQuery,
    refuse_repeated_parameters,
)
from api.request_limits import AnnouncedBodyLimit, BodyTooLarge, capped_stream, read_capped
from api.schemas import InspectionList, InspectionOut, error_responses, inspection_out
from api.security_headers import SecurityHeaders, api_policy
from db.api_keys import authenticate
from db.permissions import PermissionDenied
from db.projects import find_project
from db.station_inspections import StationRecord, get_post, list_posts
from services.station_inspection import (
    NoActiveModel,
    PartIdConflict,
    Station,
    inspect_station_part,
    map_overlay_png,
)
from workers.outbound_delivery import OutboundDelivery

log = logging.getLogger("loupe.api")

API_PREFIX = "/api/v1/projects/{project}"
MAX_BYTES = MAX_FILE_BYTES
"""Largest image accepted per post (a 413 beyond): the same cap as server folders'."""
MULTIPART_OVERHEAD = 64 * 1024
"""What a multipart body may carry beside its image (boundaries, part headers)."""
PUBLIC_URL_ENV = "LOUPE_API_PUBLIC_URL"
"""The API's address as stations reach it (e.g. ``https://loupe.plant.example/``): links in
answers start with it; unset, links are relative to the server (``/api/v1/...``). The
request's ``Host`` header is never used."""
NOT_IMAGE_TYPES = ("application/json", "text/")
"""Declared body types refused with 415. Any other non-multipart body is read as the image's
bytes and decoded: curl's ``--data-binary`` declares ``application/x-www-form-urlencoded``."""
BEARER = HTTPBearer(auto_error=False, description="A station API key: `Bearer <key>`.")
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="A station API key, as a header of its own."
)
KEY_ERRORS = (401, 403, 404)
"""What every route may answer about its key (none, wrong scope, another project's)."""
InspectionId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
IMAGE_BODY = {
    "required": True,
    "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
                "additionalProperties": False,
            }
        },
    },
}


def create_app(
    session_factory: sessionmaker[Session] | None = None,
    *,
    data_dir: FilePath | None = None,
    runtime: str | None = None,
    public_url: str | None = None,
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
            (:func:`services.scoring.runtime.warm_up_active_models`).
        public_url: The API's address as stations reach it, for the links in answers; default
            ``$LOUPE_API_PUBLIC_URL``, else links are relative (never from ``Host``).
    """
    from services.scoring.runtime import (
        configured_runtime,
        detector_loader,
        warm_up_active_models,
    )

    factory = session_factory or db.make_session_factory(db.init_db())
    runtime = runtime or configured_runtime()
    scoring = threading.Lock()  # one part scored at a time: the model uses every core

    link_base = (public_url or os.environ.get(PUBLIC_URL_ENV) or "").strip().rstrip("/")
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
        dependencies=[Depends(refuse_repeated_parameters)],
    )
    _install_error_handlers(app)
    app.add_middleware(AnnouncedBodyLimit, limit=MAX_BYTES + MULTIPART_OVERHEAD)
    app.add_middleware(SecurityHeaders, policy=api_policy)  # outermost: on every answer

    def session() -> Iterator[Session]:
        with factory() as opened:
            yield opened

    def station_key(
        project: str,
        scope: str,
        bearer: HTTPAuthorizationCredentials | None,
        x_api_key: str | None,
        session: Session,
    ) -> Station:
        presented = x_api_key
        if presented is None and bearer is not None:
            presented = bearer.credentials.strip()
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
            bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
            x_api_key: Annotated[str | None, Depends(API_KEY_HEADER)] = None,
        ) -> Station:
            return station_key(project, scope, bearer, x_api_key, session)

        return station_of

    reader, inspector = key_with("read"), key_with("inspect")

    def links(record: StationRecord) -> dict[str, str | None]:
        here = f"{link_base}/api/v1/projects/{record.project_id}/inspections/{record.id}"
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
        responses={
            200: {"model": InspectionOut, "description": "An earlier post of the part"},
            **error_responses(*KEY_ERRORS, 409, 413, 415, 422),
        },
        openapi_extra={"requestBody": IMAGE_BODY},
    )
    async def post_inspection(
        request: Request,
        station: Annotated[Station, Depends(inspector)],
        query: Annotated[PostQuery, Query()],
    ) -> Response:
        """Score one part: the raw image as the body, or multipart with one field ``file``."""
        data, filename = await _image_of(request)
        part_id = query.part_id

        def work() -> Any:
            with scoring:
                return inspect_station_part(
                    factory,
                    station,
                    data,
                    filename=filename or f"{station.name}-{part_id or 'part'}.png",
                    part_id=part_id,
                    captured_at=query.captured_at,
                    detector_for=detector_for,
                    data_dir=data_dir,
                )

        from starlette.concurrency import run_in_threadpool

        try:
            posted = await run_in_threadpool(work)
        except NoActiveModel as err:
            raise HTTPException(409, str(err)) from err
        except PartIdConflict as err:
            raise HTTPException(409, str(err)) from err
        if posted.record is None:
            raise HTTPException(422, f"The image was refused: {posted.error}")
        if delivery is not None and not posted.duplicate:
            delivery.wake()  # its verdict goes out now, not at the next poll
        body = inspection_out(posted.record, duplicate=posted.duplicate, **links(posted.record))
        return JSONResponse(
            body.model_dump(mode="json"), status_code=200 if posted.duplicate else 201
        )

    @app.get(
        f"{API_PREFIX}/inspections/{{inspection_id}}",
        response_model=InspectionOut,
        responses=error_responses(*KEY_ERRORS, 413, 422),
    )
    def get_inspection(
        inspection_id: InspectionId,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
    ) -> InspectionOut:
        """One inspection, with the part's current human label once reviewed."""
        record = _found(get_post(session, station.project_id, inspection_id), inspection_id)
        return inspection_out(record, **links(record))

    @app.get(
        f"{API_PREFIX}/inspections",
        response_model=InspectionList,
        responses=error_responses(*KEY_ERRORS, 413, 422),
    )
    def list_inspections(
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
        query: Annotated[InspectionFilter, Query()],
    ) -> InspectionList:
        """The project's inspections in ``[since, until)``, oldest first, a page at a time."""
        records = list_posts(
            session,
            station.project_id,
            since=query.since,
            until=query.until,
            verdict=query.verdict,
            limit=query.limit + 1,
            offset=query.offset,
        )
        page = [inspection_out(r, **links(r)) for r in records[: query.limit]]
        more = len(records) > query.limit
        return InspectionList(items=page, next_offset=query.offset + query.limit if more else None)

    @app.get(
        f"{API_PREFIX}/inspections/{{inspection_id}}/image",
        response_class=FileResponse,
        responses={
            200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "The image"},
            **error_responses(*KEY_ERRORS, 410, 413, 422),
        },
    )
    def inspection_image(
        inspection_id: InspectionId,
        station: Annotated[Station, Depends(reader)],
        session: Annotated[Session, Depends(session)],
    ) -> FileResponse:
        """The stored image file of the inspected part."""
        record = _found(get_post(session, station.project_id, inspection_id), inspection_id)
        path = db.absolute_image_path(record.stored_path, data_dir)
        if not path.exists():
            raise HTTPException(410, "The image file is no longer stored.")
        return FileResponse(path)  # typed by its sniffed extension (.png -> image/png ...)

    @app.get(
        f"{API_PREFIX}/inspections/{{inspection_id}}/map",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "The part with its map"},
            **error_responses(*KEY_ERRORS, 410, 413, 422),
        },
    )
    def inspection_map(
        inspection_id: InspectionId,
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
    """The posted image: the raw body, or the one multipart field ``file``.

    The body is counted while it streams and dropped past :data:`MAX_BYTES` (a 413 before it is
    read whole or spooled); an announced ``Content-Length`` over it is refused unread.
    """
    too_large = HTTPException(
        413, f"The image is larger than {MAX_BYTES // (1024 * 1024)} MB: send a smaller file."
    )
    content_type = request.headers.get("content-type", "").lower()
    try:
        if content_type.startswith("multipart/form-data"):
            data, filename = await _multipart_image(request)
        elif content_type.startswith(NOT_IMAGE_TYPES):
            raise HTTPException(
                415,
                f"A body of type {content_type.split(';')[0]!r} is not an image: send the image "
                "as the body (image/png, image/jpeg, application/octet-stream...) or as the "
                "multipart field 'file'.",
            )
        else:
            data, filename = await read_capped(request, MAX_BYTES), None
    except BodyTooLarge as err:
        raise too_large from err
    if not data:
        raise HTTPException(422, "The request carries no image.")
    if len(data) > MAX_BYTES:
        raise too_large
    return data, filename


async def _multipart_image(request: Request) -> tuple[bytes, str | None]:
    """The one file of a multipart body in field ``file``; anything else is a 422."""
    parser = MultiPartParser(
        request.headers,
        capped_stream(request, MAX_BYTES + MULTIPART_OVERHEAD),
        max_files=2,
        max_fields=8,
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise HTTPException(422, f"The multipart body cannot be read: {err}") from err
    try:
        unknown = sorted(set(form.keys()) - {"file"})
        if unknown:
            raise HTTPException(
                422, f"Unknown multipart field(s) {', '.join(map(repr, unknown))}: send 'file'."
            )
        files = form.getlist("file")
        if len(files) != 1 or not isinstance(files[0], UploadFile):
            found = f"{len(files)} 'file' fields" if len(files) != 1 else "a text field"
            raise HTTPException(422, f"Send one image per post as the file field 'file' ({found}).")
        upload = files[0]
        return await upload.read(MAX_BYTES + 1), upload.filename
    finally:
        await form.close()


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"code", "message"}}`` (validation errors list the fields)."""
    codes = {
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        410: "gone",
        413: "too_large",
        415: "unsupported_media_type",
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

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=err)
        body = {"error": {"code": "internal", "message": "The server failed; see its log."}}
        return JSONResponse(body, status_code=500)
