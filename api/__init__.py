"""The inspection API: camera stations post parts, MES systems read verdicts (FastAPI).

``loupe api`` serves :func:`api.app.create_app` with uvicorn on port 8502
(``LOUPE_API_PORT``). The OpenAPI description is at ``/docs`` and ``/openapi.json``.
"""
