"""OGC API exception bodies ({"code", "description"}) for what the server answers itself, and their statuses."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

LOGGER = logging.getLogger(__name__)
CODES = {
    400: "InvalidParameterValue",
    401: "NotAuthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    500: "NoApplicableCode",
}


def ogc_exception(status: int, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = CODES.get(status, "NoApplicableCode")
    return JSONResponse({"code": code, "type": code, "description": description}, status_code=status, headers=headers)


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return ogc_exception(exc.status_code, str(exc.detail), headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    LOGGER.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ogc_exception(500, "internal server error (see the server log)")


def unauthorized() -> JSONResponse:
    return ogc_exception(
        401, "the API key is not valid", headers={"WWW-Authenticate": 'Bearer realm="geoportal", error="invalid_token"'}
    )


def forbidden(collection_id: str) -> JSONResponse:
    return ogc_exception(403, f"the API key does not give access to collection {collection_id!r}")
