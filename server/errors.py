"""One error hierarchy for what the server refuses, and the one table that turns it into HTTP at the edge.

Code below the edge raises these transport-free classes (tipg/titiler pattern); `error_response` is the
only place that knows their statuses and OGC exception codes. Anything else is a defect: a logged 500.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

LOGGER = logging.getLogger(__name__)


class GeoportalError(Exception):
    """A request the server refuses; the message is for the client."""


class BadRequest(GeoportalError):
    """A malformed or out-of-range parameter."""


class NotFound(GeoportalError):
    """No such layer, item, tile or file for this caller."""


class Forbidden(GeoportalError):
    """A valid key whose level is below what the layer needs."""


class NotAuthorized(GeoportalError):
    """A key that is not valid."""


class PayloadTooLarge(GeoportalError):
    """A request body above the configured limit."""


STATUS: dict[type[GeoportalError], int] = {
    BadRequest: 400,
    NotAuthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    PayloadTooLarge: 413,
}
CODES = {
    400: "InvalidParameterValue",
    401: "NotAuthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    500: "NoApplicableCode",
    503: "ServiceUnavailable",
}
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="geoportal", error="invalid_token"'}


def status_of(error: GeoportalError) -> int:
    return next(STATUS[cls] for cls in type(error).__mro__ if cls in STATUS)


def ogc_exception(status: int, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = CODES.get(status, "NoApplicableCode")
    return JSONResponse({"code": code, "type": code, "description": description}, status_code=status, headers=headers)


def error_response(error: GeoportalError) -> JSONResponse:
    status = status_of(error)
    return ogc_exception(status, str(error), headers=UNAUTHORIZED_HEADERS if status == 401 else None)


async def geoportal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GeoportalError)
    return error_response(exc)


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return ogc_exception(exc.status_code, str(exc.detail), headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    LOGGER.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ogc_exception(500, "internal server error (see the server log)")
